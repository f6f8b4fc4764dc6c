"""``batch-serving`` command line: thin argument parsing around the library.

Exit codes: 0 success; 1 unexpected error; 2 config/usage; 3 registry/model; 4 input
validation; 5 scoring; 6 output validation; 7 storage/I-O.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from batch_serving.errors import BatchServingError

log = logging.getLogger("batch_serving")

EXIT_CODES = """exit codes:
  0  success
  1  unexpected error (bug): rerun with --verbose for the traceback
  2  invalid config or arguments
  3  model registry unreachable, model/alias/version unknown, or model not loadable
  4  input validation failed (missing partition, missing column, wrong type)
  5  more rows could not be scored than validation.max_bad_rows allows
  6  output validation failed (row counts do not reconcile); nothing committed
  7  storage error (unreadable file, failed commit, serving store unreachable)
  7  also: another run holds the date's lease (the message names it; --wait waits)
  8  publish refused (partition not committed or failed validation; nothing to roll back to)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch-serving",
        description="Score warehouse Parquet with MLflow registry models on Spark.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    score = sub.add_parser(
        "score",
        help="score one date partition and commit its predictions",
        description="Resolve the model once, score the input partition of --run-date, and "
        "atomically replace predictions/<model>/ds=<run-date>/ (other dates untouched).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(score)
    model = score.add_mutually_exclusive_group()
    model.add_argument("--model-alias", help="registry alias to score with (overrides config)")
    model.add_argument(
        "--model-version", type=int, help="registry version to score with (overrides config)"
    )
    score.add_argument(
        "--tracking-uri", help="MLflow tracking/registry URI (overrides model.tracking_uri)"
    )
    add_wait_argument(score)
    score.set_defaults(func=_cmd_score)

    for name, helptext in (
        ("check-input", "pre-flight: partition, registry/alias, columns, rows (no Spark)"),
        ("check-output", "post-flight: the date's predictions are committed and validated"),
    ):
        check = sub.add_parser(
            name,
            help=helptext,
            description=helptext,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_job_arguments(check)
        if name == "check-output":
            add_wait_argument(check)
        check.set_defaults(func=_cmd_check)

    recover = sub.add_parser(
        "recover",
        help="repair dates whose commit was interrupted (a crash between the two renames)",
        description="Puts back the previous partition of every date (or --run-date) whose "
        "swap was interrupted, under the date's lease. Every score run, check-output and "
        "publish does this first for their date; this command does it on demand.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(recover, run_date_required=False)
    add_wait_argument(recover)
    recover.set_defaults(func=_cmd_recover)

    backfill = sub.add_parser(
        "backfill",
        help="score (and optionally publish) every date of a range, oldest first",
        description="Runs the score job for each date from --from to --to in one Spark "
        "session. Each date replaces its own partition, so rerunning a range is idempotent. "
        "Stops at the first failing date (its exit code) after printing what was done.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backfill.add_argument("--config", required=True, help="job config YAML")
    backfill.add_argument("--env", help="overlay conf/<env>/... on top of --config")
    backfill.add_argument("--from", dest="date_from", required=True, help="first date, YYYY-MM-DD")
    backfill.add_argument("--to", dest="date_to", required=True, help="last date, YYYY-MM-DD")
    backfill.add_argument("--publish", action="store_true", help="publish the last date scored")
    add_wait_argument(backfill)
    backfill.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    backfill.set_defaults(func=_cmd_backfill)

    sql = sub.add_parser(
        "sql",
        help="run a SQL query over the prediction tables (Spark + the job's metastore)",
        description='Example: batch-serving sql "SELECT ds, count(*) FROM predictions.churn '
        'GROUP BY ds"',
    )
    sql.add_argument("query", help="SQL text")
    sql.add_argument("--config", default="conf/jobs/churn.yaml", help="job config (metastore)")
    sql.add_argument("--env", help="overlay conf/<env>/... on top of --config")
    sql.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    sql.set_defaults(func=_cmd_sql)

    publish = sub.add_parser(
        "publish",
        help="make a committed predictions partition the lookup API's current snapshot",
        description="Build a serving snapshot (sorted Arrow IPC + manifest with checksum) from "
        "predictions/<model>/ds=<run-date>/ and switch the current pointer to it atomically, in "
        "every backend of publish.backends. Refuses a partition without a committed manifest "
        "or with failed validation. --rollback makes the previous snapshot current again.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    publish.set_defaults(func=_cmd_publish)

    serve = sub.add_parser(
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
    serve.set_defaults(func=_cmd_serve)

    demo = sub.add_parser(
        "demo",
        help="generate sample data and demo models, then score one date end to end",
        description="Creates a sample warehouse table and a local SQLite MLflow registry with "
        "demo models (alias 'champion'), at the locations named in --config, then runs the "
        "score job for --run-date. Safe to run again: existing data and models are reused.",
    )
    demo.add_argument("--config", default="conf/jobs/churn.yaml", help="job config (YAML)")
    demo.add_argument("--run-date", default="2026-11-22", help="date to score (YYYY-MM-DD)")
    demo.add_argument("--rows", type=int, default=200_000, help="rows per date partition")
    demo.add_argument("--days", type=int, default=3, help="date partitions to generate")
    demo.set_defaults(func=_cmd_demo)
    return parser


def add_job_arguments(parser: argparse.ArgumentParser, run_date_required: bool = True) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # keeps a -v given before the command
        help="debug logs and tracebacks (also accepted before the command)",
    )
    parser.add_argument(
        "--config", required=True, help="job config YAML, e.g. conf/jobs/churn.yaml"
    )
    parser.add_argument(
        "--run-date", required=run_date_required, help="partition date to process, YYYY-MM-DD"
    )
    parser.add_argument("--env", help="overlay conf/<env>/... on top of --config")


def add_wait_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another run is writing the same date, wait for it (default: fail with exit 7)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BatchServingError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1


def _cmd_score(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.runs.job import run_score
    from batch_serving.runs.summary import summary_lines
    from batch_serving.spark.session import build_session

    run_date = parse_run_date(args.run_date)
    cfg = load_config(args.config, env=args.env).with_overrides(
        model_alias=args.model_alias,
        model_version=args.model_version,
        tracking_uri=args.tracking_uri,
    )
    spark = build_session(
        cfg.spark, f"batch-serving-{cfg.job}", catalog=cfg.catalog, metastore_dir=cfg.metastore_dir
    )
    result = run_score(spark, cfg, run_date, wait=args.wait)
    print("\n".join(summary_lines(result.manifest, result.after)))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date, prepare_process_env
    from batch_serving.runs.preflight import check_input, check_output

    prepare_process_env(worker_python=None)
    cfg = load_config(args.config, env=args.env)
    run_date = parse_run_date(args.run_date)
    if args.command == "check-input":
        print("\n".join(check_input(cfg, run_date)))
    else:
        print("\n".join(check_output(cfg, run_date, wait=args.wait)))
    return 0


def _cmd_recover(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.runs.recovery import recover_dates

    cfg = load_config(args.config, env=args.env)
    run_date = parse_run_date(args.run_date) if args.run_date else None
    print("\n".join(recover_dates(cfg, run_date, wait=args.wait)))
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    import datetime as dt

    from batch_serving.config import load_config, parse_run_date
    from batch_serving.errors import ConfigError
    from batch_serving.runs.job import run_score
    from batch_serving.serving.publish import publish
    from batch_serving.spark.session import build_session

    first, last = parse_run_date(args.date_from), parse_run_date(args.date_to)
    if last < first:
        raise ConfigError(f"--to {last} is before --from {first}")
    cfg = load_config(args.config, env=args.env)
    spark = build_session(
        cfg.spark,
        f"batch-serving-backfill-{cfg.job}",
        catalog=cfg.catalog,
        metastore_dir=cfg.metastore_dir,
    )
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    for n, day in enumerate(days, start=1):
        try:
            result = run_score(spark, cfg, day, wait=args.wait)
        except BatchServingError:
            print(f"backfill: {n - 1} of {len(days)} dates done; {day} failed", file=sys.stderr)
            raise
        print(f"backfill: {day} -> {result.committed.rows} rows ({n}/{len(days)})")
    if args.publish:
        done = publish(cfg, last, wait=args.wait)
        print(f"backfill: published {done.snapshot_id}")
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config
    from batch_serving.spark.session import build_session

    cfg = load_config(args.config, env=args.env)
    spark = build_session(
        cfg.spark, "batch-serving-sql", catalog=cfg.catalog, metastore_dir=cfg.metastore_dir
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        frame = spark.sql(args.query)
    except Exception as exc:
        from batch_serving.errors import ConfigError

        raise ConfigError(f"query failed: {str(exc).strip().splitlines()[0]}") from None
    frame.show(args.limit, truncate=False)
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.errors import ConfigError
    from batch_serving.serving.publish import publish, rollback

    cfg = load_config(args.config, env=args.env).with_publish(
        backends=args.backend, redis_url=args.redis_url
    )
    if args.rollback:
        if args.run_date:
            raise ConfigError("--rollback takes no --run-date: it returns to the previous snapshot")
        done = rollback(cfg)
        print(f"batch-serving: rolled back {done.model} from {done.previous} to {done.snapshot_id}")
    else:
        if not args.run_date:
            raise ConfigError("--run-date is required (or give --rollback)")
        run_date = parse_run_date(args.run_date)
        done = publish(cfg, run_date, allow_older=args.allow_older, wait=args.wait)
        if done.skipped_reason:
            print(f"batch-serving: not published: {done.skipped_reason} (--allow-older forces)")
            return 0
        verb = "published" if done.changed else "already current:"
        print(f"batch-serving: {verb} {done.model} snapshot {done.snapshot_id} ({done.rows} ids)")
    print(f"  backends : {', '.join(done.backends)}")
    print(f"  snapshot : {done.path}")
    print(f"  previous : {done.previous or 'none'}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from batch_serving.api.app import create_app
    from batch_serving.config import load_serve_settings

    settings = load_serve_settings(
        snapshot_root=args.root,
        backend=args.backend,
        redis_url=args.redis_url,
        auth_tokens_file=args.token_file,
        max_batch=args.max_batch,
    )
    app = create_app(settings)
    log.info(
        "lookup API on http://%s:%d (snapshots: %s)", args.host, args.port, settings.snapshot_root
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from batch_serving.config import parse_run_date
    from batch_serving.demo import run_demo

    lines = run_demo(
        Path(args.config), parse_run_date(args.run_date), rows=args.rows, days=args.days
    )
    print("\n".join(lines))
    return 0


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "mlflow", "alembic", "urllib3", "git", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
