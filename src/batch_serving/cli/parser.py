"""The ``batch-serving`` argument parser: commands, their flags, help and exit codes."""

from __future__ import annotations

import argparse

from batch_serving.cli import commands
from batch_serving.cli.exit_codes import HelpFormatter, exit_codes_epilog
from batch_serving.cli.feature_commands import add_feature_commands
from batch_serving.cli.learning_commands import add_learning_commands
from batch_serving.cli.options import add_json_argument, add_version_argument

# ``demo`` is the one command with a default job file: the demo's own, which it fills with
# sample data and a local registry (every other command needs --config).
DEMO_CONFIG = "conf/jobs/churn.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch-serving",
        description="Score warehouse Parquet with MLflow registry models on Spark.",
        epilog=exit_codes_epilog(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    add_version_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    score = add_command(
        sub,
        "score",
        help="score one date partition and commit its predictions",
        description="Resolve the model once, score the input partition of --run-date, and "
        "atomically replace predictions/<model>/ds=<run-date>/ (other dates untouched).",
    )
    add_job_arguments(score)
    add_model_arguments(score)
    add_wait_argument(score)
    add_json_argument(score)
    score.set_defaults(func=commands.score_command)

    for name, helptext in (
        (
            "check-input",
            "pre-flight: partition, registry/alias, columns, rows "
            "(a local Spark session only for a Spark ML model or an input.table)",
        ),
        ("check-output", "post-flight: the date's predictions are committed and validated"),
    ):
        check = add_command(sub, name, help=helptext)
        add_job_arguments(check)
        if name == "check-output":
            add_wait_argument(check)
        add_json_argument(check)
        check.set_defaults(func=commands.check_command)

    resolve = add_command(
        sub,
        "resolve-input",
        help="print the date's input partition directory and the marker that completes it",
        description="Where the date's input partition is and which file marks it complete "
        "(schedule.input_marker): what the Airflow input sensor waits for. An input.table is "
        "resolved in the metastore (a Spark session, one DESCRIBE TABLE EXTENDED); a path "
        "needs no Spark. The partition need not exist yet.",
    )
    add_job_arguments(resolve)
    add_json_argument(resolve)
    resolve.set_defaults(func=commands.resolve_input_command)

    recover = add_command(
        sub,
        "recover",
        help="repair dates whose commit was interrupted (a crash between the two renames)",
        description="Puts back the previous partition of every date (or --run-date) whose "
        "swap was interrupted, under the date's lease. Every score run, check-output and "
        "publish does this first for their date; this command does it on demand.",
    )
    add_job_arguments(recover, run_date_required=False)
    add_wait_argument(recover)
    add_json_argument(recover)
    recover.set_defaults(func=commands.recover_command)

    backfill = add_command(
        sub,
        "backfill",
        help="score (and optionally publish) every date of a range, oldest first",
        description="Runs the score job for each date from --from to --to in one Spark "
        "session. Each date replaces its own partition, so rerunning a range is idempotent. "
        "Stops at the first failing date (its exit code) after printing what was done.",
    )
    backfill.add_argument("--config", required=True, help="job config YAML")
    backfill.add_argument("--env", help="overlay conf/<env>/... on top of --config")
    backfill.add_argument("--from", dest="date_from", required=True, help="first date, YYYY-MM-DD")
    backfill.add_argument("--to", dest="date_to", required=True, help="last date, YYYY-MM-DD")
    backfill.add_argument("--publish", action="store_true", help="publish the last date scored")
    add_model_arguments(backfill)
    add_wait_argument(backfill)
    add_json_argument(backfill)
    backfill.set_defaults(func=commands.backfill_command)

    sql = add_command(
        sub,
        "sql",
        help="run a SQL query over the prediction tables (Spark + the job's metastore)",
        description="Example: batch-serving sql --config conf/jobs/churn.yaml "
        '"SELECT ds, count(*) FROM predictions.churn GROUP BY ds". An unknown table is one '
        "error line that lists the tables there are.",
    )
    sql.add_argument("query", help="SQL text")
    sql.add_argument(
        "--config", required=True, help="job config YAML: its catalog (metastore) and spark"
    )
    sql.add_argument("--env", help="overlay conf/<env>/... on top of --config")
    sql.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    add_json_argument(sql)
    sql.set_defaults(func=commands.sql_command)

    publish = add_command(
        sub,
        "publish",
        help="make a committed predictions partition the lookup API's current snapshot",
        description="Build a serving snapshot (sorted Arrow IPC + manifest with checksum) from "
        "predictions/<model>/ds=<run-date>/ and switch the current pointer to it atomically, in "
        "every backend of publish.backends. Refuses a partition without a committed manifest "
        "or with failed validation. --rollback makes the previous snapshot current again.",
    )
    add_job_arguments(publish, run_date_required=False)
    publish.add_argument(
        "--rollback", action="store_true", help="switch back to the previously current snapshot"
    )
    publish.add_argument(
        "--backend",
        action="append",
        choices=["embedded", "redis"],
        help="store(s) to publish to (repeatable; overrides publish.backends)",
    )
    publish.add_argument("--redis-url", help="Redis URL (overrides publish.redis_url)")
    add_wait_argument(publish)
    publish.add_argument(
        "--allow-older",
        action="store_true",
        help="make the date current even if the current snapshot is for a later date",
    )
    add_json_argument(publish)
    publish.set_defaults(func=commands.publish_command)

    serve = add_command(
        sub,
        "serve",
        help="run the lookup API over published snapshots",
        description="Serve GET /v1/models/{model}/predictions/{id}, POST ...:batchGet, "
        "/v1/models, /health and /metrics. Settings come from BATCH_SERVING_* environment "
        "variables; the flags below override them.",
    )
    serve.add_argument("--root", help="snapshot root (BATCH_SERVING_SNAPSHOT_ROOT)")
    serve.add_argument("--backend", choices=["embedded", "redis"], help="BATCH_SERVING_BACKEND")
    serve.add_argument("--redis-url", help="BATCH_SERVING_REDIS_URL")
    serve.add_argument(
        "--token-file",
        help="bearer tokens, one per line; enables auth (BATCH_SERVING_AUTH_TOKENS_FILE)",
    )
    serve.add_argument("--max-batch", type=int, help="ids per batchGet (BATCH_SERVING_MAX_BATCH)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.set_defaults(func=commands.serve_command)

    demo = add_command(
        sub,
        "demo",
        help="generate sample data and demo models, then score one date end to end",
        description="Creates a sample warehouse table and a local SQLite MLflow registry with "
        "demo models (alias 'champion'), at the locations named in --config, then runs the "
        "score job for --run-date. Safe to run again: existing data and models are reused.",
    )
    demo.add_argument(
        "--config",
        default=DEMO_CONFIG,
        help=f"job config YAML (default: {DEMO_CONFIG}, the demo's own job; relative to the "
        "working directory)",
    )
    demo.add_argument("--run-date", default="2026-11-22", help="date to score (YYYY-MM-DD)")
    demo.add_argument("--rows", type=int, default=200_000, help="rows per date partition")
    demo.add_argument("--days", type=int, default=3, help="date partitions to generate")
    add_json_argument(demo)
    demo.set_defaults(func=commands.demo_command)

    add_export_onnx_parser(sub)
    add_stream_parser(sub)

    schema = add_command(
        sub,
        "schema",
        help="print the JSON Schema of a job file (for editors and CI checks)",
        description="Prints the JSON Schema (draft 2020-12) of conf/jobs/*.yaml, generated "
        "from the typed config: every key, its type, default and description.",
    )
    schema.add_argument(
        "--json", action="store_true", help="accepted for scripts: the schema is JSON either way"
    )
    schema.set_defaults(func=commands.schema_command)
    add_monitoring_commands(sub)
    add_learning_commands(sub)  # promote, rollback (issue #25)
    add_feature_commands(sub)  # training-set
    return parser


def add_monitoring_commands(sub: argparse._SubParsersAction) -> None:
    """``runs`` and ``report`` (issue #13: drift per run and the run report)."""
    from batch_serving.cli import monitoring_commands

    runs = add_command(
        sub,
        "runs",
        help="list a job's runs: status, rows, drift and gate outcome",
        description="One line per run of the job's model: committed runs (oldest date first), "
        "then runs whose data no partition holds (replaced or never committed). The drift gate "
        "is evaluated with the config's current monitoring.gates, as publish would. "
        "--run-date keeps that date's runs only.",
    )
    add_job_arguments(runs, run_date_required=False)
    add_json_argument(runs)
    runs.set_defaults(func=monitoring_commands.runs_command)

    report = add_command(
        sub,
        "report",
        help="(re)build the HTML report of a run and the index page; print the report's path",
        description="Builds <output.root>/_runs/predictions/<model>/<run_id>/report.html for the "
        "run committed for --run-date (default: the latest committed date) and "
        "<output.root>/_runs/index.html, from the manifest and the drift profile (no Spark).",
    )
    add_job_arguments(report, run_date_required=False)
    add_json_argument(report)
    report.set_defaults(func=monitoring_commands.report_command)


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A command with what every command has: the exit-code epilog and ``-v`` after its name."""
    command = sub.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=exit_codes_epilog(),
        formatter_class=HelpFormatter,
    )
    command.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # keeps a -v given before the command
        help="debug logs and tracebacks (also accepted before the command)",
    )
    return command


def add_job_arguments(parser: argparse.ArgumentParser, run_date_required: bool = True) -> None:
    parser.add_argument(
        "--config", required=True, help="job config YAML, e.g. conf/jobs/churn.yaml"
    )
    parser.add_argument(
        "--run-date", required=run_date_required, help="partition date to process, YYYY-MM-DD"
    )
    parser.add_argument("--env", help="overlay conf/<env>/... on top of --config")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model overrides of the runs that score (``score``, ``backfill``)."""
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model-alias", help="registry alias to score with (overrides config)")
    model.add_argument(
        "--model-version", type=int, help="registry version to score with (overrides config)"
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking/registry URI (overrides model.tracking_uri)"
    )


def add_wait_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another run is writing the same date, wait for it (default: fail with exit 7)",
    )


def add_export_onnx_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = add_command(
        sub,
        "export-onnx",
        help="convert a registered sklearn model to ONNX behind a parity gate, register it",
        description="Converts --model with skl2onnx (float64 inputs when onnxruntime can run "
        "them), scores a real partition with both models and registers <name>_onnx only if "
        "the largest score difference is within --tolerance and no row changes side of 0.5 or "
        "of any threshold the job's rules use. Prints the parity report (worst rows by id).",
    )
    export.add_argument(
        "--model", required=True, help="models:/<name>@<alias> or models:/<name>/<N>"
    )
    export.add_argument(
        "--config", help="job config: rules' thresholds, entity ids, input, registry"
    )
    export.add_argument("--env", help="overlay conf/<env>/... on top of --config")
    where = export.add_mutually_exclusive_group(required=True)
    where.add_argument("--input", help="partition directory (Parquet) to check parity on")
    where.add_argument("--run-date", help="check on the job's input partition of this date")
    export.add_argument(
        "--tracking-uri", help="MLflow registry (default: the job's model.tracking_uri)"
    )
    export.add_argument(
        "--tolerance", type=float, default=1e-5, help="max |score diff| allowed (default 1e-5)"
    )
    export.add_argument(
        "--dtype",
        choices=["auto", "float64", "float32"],
        default="auto",
        help="ONNX numeric input type (auto: float64, else float32)",
    )
    export.add_argument("--max-rows", type=int, help="compare only the first N rows")
    export.add_argument(
        "--dry-run", action="store_true", help="run the gate and print the report; register nothing"
    )
    add_json_argument(export)
    export.set_defaults(func=commands.export_onnx_command)


def add_stream_parser(sub: argparse._SubParsersAction) -> None:
    stream = add_command(
        sub,
        "stream",
        help="score events continuously: Structured Streaming over the job's `stream:` source",
        description="Resolve the models once, then score each micro-batch of newly landed "
        "files (or the rate source) with the batch scoring core and write it exactly once to "
        "stream_predictions/<model>/ds=<event date>/ (bad rows to stream_quarantine). SIGTERM "
        "finishes the current batch and exits 0. --available-now scores what has landed and "
        "exits (for Airflow).",
    )
    stream.add_argument("--config", required=True, help="job config YAML with a `stream:` section")
    stream.add_argument("--env", help="overlay conf/<env>/... on top of --config")
    stream.add_argument(
        "--available-now",
        action="store_true",
        help="process every file landed so far in bounded batches, then exit 0",
    )
    add_json_argument(stream)
    stream.set_defaults(func=commands.stream_command)
