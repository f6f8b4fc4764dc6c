"""One function per ``batch-serving`` command: parse nothing, call the library, print."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch_serving.cli.output import emit, published_record, score_record, stdout_reserved
from batch_serving.cli.progress import Progress
from batch_serving.errors import BatchServingError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from batch_serving.config import JobConfig
    from batch_serving.runs.context import StepTimer
    from batch_serving.tables.manifest import AfterCommit

log = logging.getLogger("batch_serving")


def score_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.runs.job import (
        open_session_early,
        prepare_run,
        run_prepared,
        start_session,
    )
    from batch_serving.runs.summary import summary_lines
    from batch_serving.spark.session import job_session

    with stdout_reserved(args.json):
        run_date = parse_run_date(args.run_date)
        cfg = load_config(args.config, env=args.env).with_overrides(
            model_alias=args.model_alias,
            model_version=args.model_version,
            tracking_uri=args.tracking_uri,
        )
        timer = _startup_timed()
        session = open_session_early(cfg, timer, lambda: job_session(cfg, batch=True))
        prepared = prepare_run(cfg, run_date, timer)  # aliases pinned, rules checked
        spark = start_session(prepared, session)  # the models downloaded meanwhile
        result = run_prepared(spark, prepared, wait=args.wait)
    emit(args.json, score_record(result), summary_lines(result.manifest, result.after))
    _log_timeline(result.after)
    return 0


def _startup_timed() -> StepTimer:
    """A run's timer holding ``startup``: from the process's start (the interpreter, the
    imports, the config) until now, the run's first step."""
    import time

    from batch_serving.runs.context import StepTimer
    from batch_serving.runs.timeline import process_origin

    timer = StepTimer()
    timer.add("startup", process_origin(), time.perf_counter())
    return timer


def _log_timeline(after: AfterCommit) -> None:
    """The run's timeline at debug level (``-v``): what the run waited for, and when."""
    from batch_serving.runs.timeline import Span, timeline_lines

    spans = [Span(s.name, s.start_s, s.end_s, s.lane) for s in after.timeline]
    for line in timeline_lines(spans, f"run {after.run_id} timeline"):
        log.debug(line)


def check_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date, prepare_process_env
    from batch_serving.runs.preflight import InputCheck, OutputCheck, check_input, check_output

    run_date = parse_run_date(args.run_date)  # a bad argument before any file is read
    prepare_process_env(worker_python=None)
    cfg = load_config(args.config, env=args.env)
    if args.command == "check-input":
        check: InputCheck | OutputCheck = check_input(_files_of_input(cfg), run_date)
    else:
        check = check_output(cfg, run_date, wait=args.wait)
    emit(args.json, check.to_dict(), check.lines())
    return 0


def resolve_input_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date, prepare_process_env
    from batch_serving.tables.inputs import awaited_partition

    run_date = parse_run_date(args.run_date)
    prepare_process_env(worker_python=None)
    cfg = load_config(args.config, env=args.env)
    found = awaited_partition(_files_of_input(cfg, "resolve"), run_date)
    emit(args.json, found.to_dict(), found.lines())
    return 0


def _files_of_input(cfg: JobConfig, role: str = "check") -> JobConfig:
    """``cfg`` whose ``input.table`` is resolved to its files, through a Spark session of its
    own (the metastore is Spark's); a ``path`` input needs no JVM."""
    if cfg.input.table is None:
        return cfg
    from batch_serving.spark.input_table import resolve_input
    from batch_serving.spark.session import job_session

    spark = job_session(cfg, role)
    try:
        return resolve_input(spark, cfg)
    finally:
        spark.stop()


def recover_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.runs.recovery import recovered, recovery_lines

    cfg = load_config(args.config, env=args.env)
    run_date = parse_run_date(args.run_date) if args.run_date else None
    done = recovered(cfg, run_date, wait=args.wait)
    record = {
        "model": cfg.model.name,
        "dates": {day.isoformat(): tables for day, tables in done.items()},
    }
    emit(args.json, record, recovery_lines(cfg.model.name, done))
    return 0


def backfill_command(args: argparse.Namespace) -> int:
    import datetime as dt

    from batch_serving.config import load_config, parse_run_date
    from batch_serving.errors import ConfigError
    from batch_serving.runs.job import (
        open_session_early,
        prepare_run,
        run_prepared,
        start_session,
    )
    from batch_serving.serving.publish import Published, publish
    from batch_serving.spark.session import job_session

    first = parse_run_date(args.date_from, flag="--from")
    last = parse_run_date(args.date_to, flag="--to")
    if last < first:
        raise ConfigError(f"--to {last} is before --from {first}")
    cfg = load_config(args.config, env=args.env).with_overrides(
        model_alias=args.model_alias,
        model_version=args.model_version,
        tracking_uri=args.tracking_uri,
    )
    timer = _startup_timed()
    session = open_session_early(cfg, timer, lambda: job_session(cfg, "backfill", batch=True))
    prepared = prepare_run(cfg, first, timer)  # a bad alias fails here, before any read
    spark = start_session(prepared, session)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    scored = []
    with Progress("backfill", "date", total=len(days)) as bar:
        for n, day in enumerate(days, start=1):
            try:
                ready = prepared if day == first else prepare_run(cfg, day)
                result = run_prepared(spark, ready, wait=args.wait)
            except BatchServingError:
                bar.echo(f"backfill: {n - 1} of {len(days)} dates done; {day} failed", sys.stderr)
                raise
            scored.append(result)
            _log_timeline(result.after)
            bar.echo(f"backfill: {day} -> {result.committed.rows} rows ({n}/{len(days)})")
            bar.advance()
    done: Published | None = None
    if args.publish:
        with Progress("publish to redis", "id") as bar:
            done = publish(cfg, last, wait=args.wait, progress=bar.reached)
    record = {
        "runs": [score_record(result) for result in scored],
        "published": published_record(done) if done is not None else None,
    }
    lines = [f"backfill: published {done.snapshot_id}"] if done is not None else []
    emit(args.json, record, lines)
    return 0


def sql_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config
    from batch_serving.spark.errors import querying
    from batch_serving.spark.session import job_session, quiet_logs

    cfg = load_config(args.config, env=args.env)
    spark = job_session(cfg, "sql")
    quiet_logs(spark)
    frame = querying(lambda: spark.sql(args.query), lambda: table_names(spark))
    if not args.json:  # Spark's own table layout
        querying(lambda: frame.show(args.limit, truncate=False), lambda: table_names(spark))
        return 0
    rows = querying(lambda: frame.limit(args.limit + 1).collect(), lambda: table_names(spark))
    record = {
        "columns": frame.columns,
        "rows": [row.asDict(recursive=True) for row in rows[: args.limit]],
        "truncated": len(rows) > args.limit,
    }
    emit(args.json, record, [])
    return 0


def table_names(spark: SparkSession) -> list[str]:
    """Tables and views the session's catalog holds, ``database.table`` (temporary views by
    their name): what a "table not found" message offers instead."""
    names = set()
    for database in spark.catalog.listDatabases():
        for table in spark.catalog.listTables(database.name):
            names.add(table.name if table.isTemporary else f"{database.name}.{table.name}")
    return sorted(names)


def publish_command(args: argparse.Namespace) -> int:
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
        head = f"batch-serving: rolled back {done.model} from {done.previous} to {done.snapshot_id}"
    else:
        if not args.run_date:
            raise ConfigError("--run-date is required (or give --rollback)")
        run_date = parse_run_date(args.run_date)
        with Progress("publish to redis", "id") as bar:
            done = publish(
                cfg, run_date, allow_older=args.allow_older, wait=args.wait, progress=bar.reached
            )
        verb = "published" if done.changed else "already current:"
        head = f"batch-serving: {verb} {done.model} snapshot {done.snapshot_id} ({done.rows} ids)"
    lines = [
        head,
        f"  backends : {', '.join(done.backends)}",
        f"  snapshot : {done.path}",
        f"  previous : {done.previous or 'none'}",
    ]
    if done.skipped_reason:
        lines = [f"batch-serving: not published: {done.skipped_reason} (--allow-older forces)"]
    emit(args.json, published_record(done), lines)
    return 0


def serve_command(args: argparse.Namespace) -> int:
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


def demo_command(args: argparse.Namespace) -> int:
    from batch_serving.config import parse_run_date
    from batch_serving.demo import demo

    done = demo(Path(args.config), parse_run_date(args.run_date), rows=args.rows, days=args.days)
    record = {
        "score": score_record(done.result),
        "published": published_record(done.published),
        "lookup": {"path": done.lookup_path, "answer": done.answer},
        "report": None if done.result.report is None else str(done.result.report),
    }
    emit(args.json, record, done.lines())
    return 0


def schema_command(args: argparse.Namespace) -> int:
    import json

    from batch_serving.config.schema import job_schema

    emit(False, {}, [json.dumps(job_schema(), indent=2)])  # JSON with or without --json
    return 0


def export_onnx_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.config.paths import absolutize_uri
    from batch_serving.errors import ConfigError, ParityGateError
    from batch_serving.runs.export_onnx import export_onnx, source_model
    from batch_serving.tables.inputs import partition_path

    cfg = load_config(args.config, env=args.env) if args.config else None
    if args.tracking_uri:
        tracking_uri = absolutize_uri(args.tracking_uri)
    elif cfg is not None:
        tracking_uri = cfg.model.tracking_uri
    else:
        raise ConfigError("give --tracking-uri or --config (its model.tracking_uri)")
    if args.run_date and cfg is None:
        raise ConfigError("--run-date needs --config (the job's input table)")
    partition = (
        Path(partition_path(_files_of_input(cfg).input, parse_run_date(args.run_date)))
        if args.run_date and cfg is not None
        else Path(args.input)
    )
    model = source_model(args.model, tracking_uri, cfg)
    refused: ParityGateError | None = None
    try:
        done = export_onnx(
            model,
            partition,
            cfg=cfg,
            tolerance=args.tolerance,
            dtype=args.dtype,
            max_rows=args.max_rows,
            register=not args.dry_run,
        )
    except ParityGateError as exc:
        refused = exc
    if refused is not None:
        report: Any = refused.report
        record = {"source": args.model, "registered": None, "parity": report.to_dict()}
        emit(args.json, record, report.lines())
        raise refused
    emit(args.json, done.to_dict(), done.lines())
    return 0


def stream_command(args: argparse.Namespace) -> int:
    import dataclasses

    from batch_serving.config import load_config
    from batch_serving.spark.session import job_session
    from batch_serving.stream.runner import run_stream, stream_config
    from batch_serving.stream.schema import parse_ddl

    cfg = load_config(args.config, env=args.env)
    parse_ddl(stream_config(cfg).columns)  # config errors before the JVM starts
    spark = job_session(cfg, "stream", with_catalog=False)
    try:
        result = run_stream(spark, cfg, available_now=args.available_now)
    finally:
        spark.stop()  # before exit, so no progress event is sent to a dead Python side
    record = dataclasses.asdict(result)
    lines = [
        f"stream {result.stream_run_id}: {result.batches} batches, {result.scored_rows} rows "
        f"scored, {result.quarantined_rows} quarantined, {result.poison_files} poison files "
        f"skipped ({result.skipped_batches} replayed batches already committed)"
    ]
    emit(args.json, record, lines)
    return 0
