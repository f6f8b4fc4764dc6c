"""One function per ``batch-serving`` command: parse nothing, call the library, print."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from batch_serving.cli.output import emit, score_record, stdout_reserved
from batch_serving.cli.progress import Progress
from batch_serving.errors import BatchServingError

log = logging.getLogger("batch_serving")


def score_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.quality.gates import preload_gx_for
    from batch_serving.runs.job import run_score
    from batch_serving.runs.summary import summary_lines
    from batch_serving.spark.session import build_session

    with stdout_reserved(args.json):
        run_date = parse_run_date(args.run_date)
        cfg = load_config(args.config, env=args.env).with_overrides(
            model_alias=args.model_alias,
            model_version=args.model_version,
            tracking_uri=args.tracking_uri,
        )
        preload_gx_for(cfg)  # GX's import overlaps the JVM's start
        spark = build_session(
            cfg.spark,
            f"batch-serving-{cfg.job}",
            catalog=cfg.catalog,
            metastore_dir=cfg.metastore_dir,
        )
        result = run_score(spark, cfg, run_date, wait=args.wait)
    emit(args.json, score_record(result), summary_lines(result.manifest, result.after))
    return 0


def check_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date, prepare_process_env
    from batch_serving.runs.preflight import InputCheck, OutputCheck, check_input, check_output

    with stdout_reserved(args.json):
        prepare_process_env(worker_python=None)
        cfg = load_config(args.config, env=args.env)
        run_date = parse_run_date(args.run_date)
        if args.command == "check-input":
            check: InputCheck | OutputCheck = check_input(cfg, run_date)
        else:
            check = check_output(cfg, run_date, wait=args.wait)
    emit(args.json, check.to_dict(), check.lines())
    return 0


def recover_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.runs.recovery import recover_dates

    cfg = load_config(args.config, env=args.env)
    run_date = parse_run_date(args.run_date) if args.run_date else None
    print("\n".join(recover_dates(cfg, run_date, wait=args.wait)))
    return 0


def backfill_command(args: argparse.Namespace) -> int:
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
    with Progress("backfill", "date", total=len(days)) as bar:
        for n, day in enumerate(days, start=1):
            try:
                result = run_score(spark, cfg, day, wait=args.wait)
            except BatchServingError:
                bar.echo(f"backfill: {n - 1} of {len(days)} dates done; {day} failed", sys.stderr)
                raise
            bar.echo(f"backfill: {day} -> {result.committed.rows} rows ({n}/{len(days)})")
            bar.advance()
    if args.publish:
        with Progress("publish to redis", "id") as bar:
            done = publish(cfg, last, wait=args.wait, progress=bar.reached)
        print(f"backfill: published {done.snapshot_id}")
    return 0


def sql_command(args: argparse.Namespace) -> int:
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
        print(f"batch-serving: rolled back {done.model} from {done.previous} to {done.snapshot_id}")
    else:
        if not args.run_date:
            raise ConfigError("--run-date is required (or give --rollback)")
        run_date = parse_run_date(args.run_date)
        with Progress("publish to redis", "id") as bar:
            done = publish(
                cfg, run_date, allow_older=args.allow_older, wait=args.wait, progress=bar.reached
            )
        if done.skipped_reason:
            print(f"batch-serving: not published: {done.skipped_reason} (--allow-older forces)")
            return 0
        verb = "published" if done.changed else "already current:"
        print(f"batch-serving: {verb} {done.model} snapshot {done.snapshot_id} ({done.rows} ids)")
    print(f"  backends : {', '.join(done.backends)}")
    print(f"  snapshot : {done.path}")
    print(f"  previous : {done.previous or 'none'}")
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
    from batch_serving.demo import run_demo

    lines = run_demo(
        Path(args.config), parse_run_date(args.run_date), rows=args.rows, days=args.days
    )
    print("\n".join(lines))
    return 0


def schema_command(args: argparse.Namespace) -> int:
    import json

    from batch_serving.config.schema import job_schema

    print(json.dumps(job_schema(), indent=2))
    return 0
