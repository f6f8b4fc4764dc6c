"""``batch-serving learn``, ``snapshot``, ``promote`` and ``rollback`` (issue #25): learn the
day's labels and register the learner as ``@challenger``, then move ``@champion`` through the
gates, or back. Thin: the work is in ``batch_serving.learning``."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from batch_serving.cli.output import emit


def add_learning_commands(sub: argparse._SubParsersAction) -> None:
    from batch_serving.cli.parser import add_command

    learn = add_command(
        sub,
        "learn",
        help="learn the labels of --run-date, then register the learner as @challenger",
        description="Reads the labels partition of --run-date, matches each label to the "
        "latest prediction of its entity at or before its event time and to the feature row "
        "that prediction was made from, and learns the matched labels from the checkpoint of "
        "--learning (labels at or before its watermark are not learned again, so a rerun "
        "learns nothing twice; a late label within labels.late_days of it is learned once). "
        "Then, if a snapshot is due (the `snapshot` cadence of --learning; default: anything "
        "learned since the last), logs and registers the learner and moves @challenger to it "
        "(not with --no-snapshot), saying why it did or did not. "
        "No labels partition or no predictions exits 4.",
    )
    _add_common(learn)
    learn.add_argument("--run-date", required=True, help="the label day (YYYY-MM-DD)")
    learn.add_argument(
        "--no-snapshot", action="store_true", help="learn and checkpoint only (see `snapshot`)"
    )
    learn.set_defaults(func=learn_command)

    follow = add_command(
        sub,
        "learn-stream",
        help="learn label files as they land (a Structured Streaming query), micro-batch by "
        "micro-batch",
        description="Reads the label files landing under labels_stream.path of --learning "
        "with a checkpointed Spark file source; each micro-batch is matched point in time to "
        "the job's predictions and features and learned from the checkpoint of --learning, "
        "which records the last batch learned (a batch Spark replays after a crash is "
        "skipped). After each batch, registers the learner as @challenger if it learned since "
        "the last snapshot (not with --no-snapshot). Runs until SIGTERM/SIGINT (the batch in "
        "flight finishes first) or, with --available-now, until the files landed at start "
        "are learned.",
    )
    _add_common(follow)
    follow.add_argument(
        "--available-now", action="store_true", help="learn the landed files, then exit"
    )
    follow.add_argument("--no-snapshot", action="store_true", help="learn and checkpoint only")
    follow.set_defaults(func=learn_stream_command)

    snapshot = add_command(
        sub,
        "snapshot",
        help="register the checkpoint's learner as @challenger if a snapshot is due",
        description="Logs the learner of the checkpoint of --learning with the sklearn flavor, "
        "registers it under the job's model name and moves @challenger to the new version, "
        "only if a snapshot is due: labels were learned since the last snapshot and the "
        "`snapshot` cadence of --learning (every_labels, every_minutes; either) is reached. "
        "Says why it did or did not register.",
    )
    _add_common(snapshot)
    snapshot.set_defaults(func=snapshot_command)

    promote = add_command(
        sub,
        "promote",
        help="move @champion to @challenger if every gate passes on recent labelled data",
        description="Scores the labels of the last `evaluation_days` days up to --run-date "
        "(matched point in time to the job's predictions and inputs) with both versions, "
        "checks the gates of --learning (metric margin, ECE, score PSI, flip rate, rows) and "
        "moves @champion only if all pass; the evidence is an MLflow run in the "
        "`batch-serving-promotions` experiment plus registry tags. A failed gate exits 11.",
    )
    _add_common(promote)
    promote.add_argument("--run-date", required=True, help="last label day (YYYY-MM-DD)")
    promote.set_defaults(func=promote_command)

    rollback = add_command(
        sub,
        "rollback",
        help="move @champion back to the version the last promotion replaced",
        description="Reads the registered model's bs.previous_champion tag (set by promote), "
        "moves @champion there and records the rollback like a promotion. Nothing to roll "
        "back to exits 3.",
    )
    _add_common(rollback)
    rollback.set_defaults(func=rollback_command)


def _add_common(parser: argparse.ArgumentParser) -> None:
    from batch_serving.cli.options import add_json_argument

    parser.add_argument("--config", required=True, help="job config YAML (model, tables)")
    parser.add_argument("--env", help="overlay conf/<env>/... on top of --config")
    parser.add_argument("--learning", required=True, help="learning.yaml (labels, gates)")
    parser.add_argument("--actor", help="who promotes, recorded as evidence (default: user)")
    add_json_argument(parser)


def learn_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.learning.run import learn_days, snapshot_if_due
    from batch_serving.learning.settings import load_learning_config

    job = load_config(args.config, env=args.env)
    learning = load_learning_config(args.learning)
    day = parse_run_date(args.run_date)
    learned = learn_days(job, learning, day, day)
    snapshot, due = (None, None) if args.no_snapshot else snapshot_if_due(job, learning)
    report = learned.report
    record = {
        "model": job.model.name,
        "run_date": day,
        "labels": learned.labels,
        "unmatched": learned.unmatched,
        "without_features": learned.without_features,
        "learned": report.learned,
        "skipped": report.skipped,
        "already_learned": report.already_learned,
        "late": report.late,
        "dropped_late": report.dropped_late,
        "total_learned": report.total_learned,
        "days": list(report.days),
        "watermark": _watermark(report.watermark),
        "checkpoint": str(report.checkpoint),
        "snapshot": _snapshot_record(snapshot),
        "snapshot_reason": None if due is None else due.reason,
    }
    lines = [
        f"batch-serving: learned {report.learned} labels of {day} for {job.model.name} "
        f"({learned.labels} read, {learned.unmatched} without a prediction, "
        f"{learned.without_features} without features, {report.already_learned} learned "
        f"before, {report.skipped} skipped); {report.total_learned} in {report.checkpoint}",
        f"batch-serving: {report.late} late labels learned, {report.dropped_late} older than the "
        f"{learning.labels.late_days}-day lateness horizon dropped (not learned)",
        _snapshot_line(job.model.name, snapshot, due),
    ]
    emit(args.json, record, lines)
    return 0


def learn_stream_command(args: argparse.Namespace) -> int:
    import dataclasses

    from batch_serving.config import load_config
    from batch_serving.learning.labels_stream import learn_stream, stream_settings
    from batch_serving.learning.settings import load_learning_config
    from batch_serving.spark.session import job_session

    job = load_config(args.config, env=args.env)
    learning = load_learning_config(args.learning)
    stream_settings(learning)  # config errors before the JVM starts
    spark = job_session(job, "learn-stream", with_catalog=False)
    try:
        result = learn_stream(
            spark, job, learning, available_now=args.available_now, snapshot=not args.no_snapshot
        )
    finally:
        spark.stop()
    record = {"model": job.model.name, **dataclasses.asdict(result)}
    lines = [
        f"batch-serving: learned {result.learned} labels of {result.batches} micro-batches for "
        f"{job.model.name} ({result.labels} read, {result.unmatched} without a prediction, "
        f"{result.without_features} without features, {result.already_learned} learned "
        f"before, {result.skipped} skipped, {result.replayed_batches} replayed batches "
        f"already learned); {result.total_learned} in {learning.checkpoint}",
        f"batch-serving: snapshots registered: {result.snapshots or 'none'}",
    ]
    emit(args.json, record, lines)
    return 0


def snapshot_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config
    from batch_serving.learning.run import snapshot_if_due
    from batch_serving.learning.settings import load_learning_config

    job = load_config(args.config, env=args.env)
    snapshot, due = snapshot_if_due(job, load_learning_config(args.learning))
    record = {
        "model": job.model.name,
        "snapshot": _snapshot_record(snapshot),
        "snapshot_reason": due.reason,
    }
    emit(args.json, record, [_snapshot_line(job.model.name, snapshot, due)])
    return 0


def _watermark(watermark: tuple[dt.datetime, str] | None) -> dict[str, str] | None:
    if watermark is None:
        return None
    return {"event_time": watermark[0].isoformat(), "entity": watermark[1]}


def _snapshot_record(snapshot: Any) -> dict[str, Any] | None:
    if snapshot is None:
        return None
    return {"version": snapshot.version, "alias": snapshot.alias, "run_id": snapshot.run_id}


def _snapshot_line(model: str, snapshot: Any, due: Any) -> str:
    """Whether a snapshot was registered, and why (the cadence's reason)."""
    if due is None:
        return "batch-serving: no snapshot (--no-snapshot)"
    if snapshot is None:
        return f"batch-serving: no snapshot of {model} registered ({due.reason})"
    return (
        f"batch-serving: {model} version {snapshot.version} registered as @{snapshot.alias} "
        f"({due.reason}; run {snapshot.run_id})"
    )


def promote_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.learning.run import promote_recent
    from batch_serving.learning.settings import load_learning_config

    job = load_config(args.config, env=args.env)
    learning = load_learning_config(args.learning)
    result = promote_recent(job, learning, parse_run_date(args.run_date), _actor(args))
    record = {
        "model": result.name,
        "promoted": result.promoted,
        "champion": result.challenger,
        "replaced": result.champion_before,
        "run_id": result.run_id,
        "gates": [g.describe() for g in result.report.gates],
    }
    lines = [
        f"batch-serving: {result.name} version {result.challenger} promoted to "
        f"@{learning.champion_alias} (was {result.champion_before}); evidence run {result.run_id}",
        *(f"  {g.describe()}" for g in result.report.gates),
    ]
    emit(args.json, record, lines)
    return 0


def rollback_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config
    from batch_serving.learning.run import rollback_champion
    from batch_serving.learning.settings import load_learning_config

    job = load_config(args.config, env=args.env)
    learning = load_learning_config(args.learning)
    result = rollback_champion(job, learning, _actor(args))
    record = {
        "model": result.name,
        "champion": result.champion,
        "rolled_back_from": result.rolled_back_from,
        "run_id": result.run_id,
    }
    lines = [
        f"batch-serving: {result.name} @{learning.champion_alias} rolled back from version "
        f"{result.rolled_back_from} to {result.champion}; evidence run {result.run_id}"
    ]
    emit(args.json, record, lines)
    return 0


def _actor(args: argparse.Namespace) -> str:
    from batch_serving.config.environment import current_user

    return str(args.actor) if args.actor else f"cli:{current_user()}"
