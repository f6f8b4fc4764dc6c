"""``batch-serving training-set``: a point-in-time-correct training set from an event history,
written as one Parquet file; ``--check`` first proves it equal to the features the stream
scored the same events with. Thin: the work is in ``features.training_files``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from batch_serving.cli.output import emit

if TYPE_CHECKING:
    from batch_serving.config import JobConfig
    from batch_serving.features.spec import WindowSpec
    from batch_serving.features.training_files import CheckResult, TrainingSet


def add_feature_commands(sub: argparse._SubParsersAction) -> None:
    from batch_serving.cli.options import add_json_argument
    from batch_serving.cli.parser import add_command

    command = add_command(
        sub,
        "training-set",
        help="build a point-in-time training set from an event history (windows: features)",
        description="Reads --events (Parquet, CSV or JSON lines; a file or a directory), gives "
        "each row of --labels (default: each event) the job's windowed features over its "
        "entity's events strictly before it (the stream's own function), and writes one "
        "Parquet file to --output atomically (an existing file is replaced only on success). "
        "No Spark. --check reads the stream's scored and quarantined rows of the job, takes "
        "only the events the stream scored as history (late ones are left out, as the stream "
        "dropped them) and exits 12 naming the first event whose stream features differ.",
    )
    command.add_argument("--config", required=True, help="job config YAML with `windows:`")
    command.add_argument("--env", help="overlay conf/<env>/... on top of --config")
    command.add_argument(
        "--events", required=True, type=Path, help="the event history: a file or a directory"
    )
    command.add_argument(
        "--labels",
        type=Path,
        help="the rows of the training set (entity, event time, labels); default: every event",
    )
    command.add_argument(
        "--label-column",
        action="append",
        dest="label_columns",
        metavar="COLUMN",
        help="a row column to keep beside the entity, time and features (repeatable; "
        "default: every column of the rows)",
    )
    command.add_argument(
        "--output", required=True, type=Path, help="the training set's Parquet file"
    )
    command.add_argument(
        "--check",
        action="store_true",
        help="compare with the stream's output of the job first; exit 12 on a difference",
    )
    command.add_argument(
        "--key",
        action="append",
        dest="keys",
        metavar="COLUMN",
        help="columns identifying one event, for --check (repeatable; default: "
        "the job's entity_columns)",
    )
    add_json_argument(command)
    command.set_defaults(func=training_set_command)


def training_set_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config
    from batch_serving.errors import ConfigError
    from batch_serving.features import training_files as tf
    from batch_serving.features.spec import WindowSpec

    job = load_config(args.config, env=args.env)
    if job.windows is None:
        raise ConfigError(f"{args.config}: no `windows:` section; training-set needs one")
    spec = WindowSpec.from_config(job.windows)
    events = tf.read_frame(args.events, "the event history")
    tf.require_columns(events, [spec.entity, spec.event_time, *spec.columns], "events", args.events)
    rows = None if args.labels is None else tf.read_frame(args.labels, "the labels")
    if rows is not None:
        tf.require_columns(rows, [spec.entity, spec.event_time], "labels", args.labels)
    if args.label_columns:
        where = args.events if rows is None else args.labels
        tf.require_columns(events if rows is None else rows, args.label_columns, "rows", where)
    keys = tuple(args.keys or job.entity_columns)
    scored = _stream_rows(job, spec, keys) if args.check else None
    if scored is not None:
        tf.require_columns(events, keys, "events", args.events)
    built = tf.build(events, spec, rows, args.label_columns, scored, keys)
    checked = None
    if scored is not None:
        every = rows is None and args.label_columns is None  # the built set is the check's
        offline = built if every else tf.build(events, spec, None, None, scored, keys)
        checked = tf.check(scored, offline.frame, spec, keys)
    tf.write_atomic(built.frame, args.output)
    _report(args, spec, built, checked)
    return 0


def _stream_rows(job: JobConfig, spec: WindowSpec, keys: tuple[str, ...]) -> pd.DataFrame:
    """The committed rows of the job's stream tables (scored and quarantined): each carries
    the features it was scored with. Raises naming the table when there are none, or when
    they lack a key or a feature column (a stream run before its rows carried features)."""
    import pyarrow.parquet as pq

    from batch_serving.errors import InputNotFoundError, MissingColumnsError
    from batch_serving.stream.layout import StreamLayout

    layout = StreamLayout.for_job(job)
    tables = (layout.predictions, layout.quarantine)
    files = [f for t in tables if t.table_dir.exists() for f in layout.committed_files(t)]
    if not files:
        folder = layout.predictions.table_dir
        raise InputNotFoundError(f"no committed stream output of {job.model.name} in {folder}")
    frames = [pq.read_table(f).to_pandas() for f in files]
    scored = pd.concat(frames, ignore_index=True)
    needed = [*keys, *spec.names]
    missing = [c for c in needed if c not in scored.columns]
    if missing:
        where = f"the stream's output {layout.predictions.table_dir}"
        raise MissingColumnsError(missing, list(scored.columns), where)
    return scored


def _report(
    args: argparse.Namespace, spec: WindowSpec, built: TrainingSet, checked: CheckResult | None
) -> None:
    frame = built.frame
    span = _span(frame, spec.event_time)
    entities = int(frame[spec.entity].nunique(dropna=False)) if len(frame) else 0
    record: dict[str, Any] = {
        "output": str(args.output),
        "rows": len(frame),
        "entities": entities,
        "time_range": span,
        "history_events": built.history_events,
        "left_out_events": built.left_out,
        "features": list(spec.names),
        "check": None if checked is None else {"rows": checked.rows, "keys": list(checked.keys)},
    }
    lines = [
        f"batch-serving: training set of {len(frame)} rows, {entities} entities "
        f"({spec.entity}), {_span_text(span)} -> {args.output}",
        f"  history: {built.history_events} events"
        + (
            f" ({built.left_out} the stream did not score, late or pending, left out)"
            if checked is not None
            else " (every event of --events; with --check only those the stream scored)"
        ),
        f"  features: {', '.join(spec.names)}",
    ]
    if checked is not None:
        lines.append(
            f"  check: the stream's features of {checked.rows} events equal the offline ones "
            f"(by {', '.join(checked.keys)})"
        )
    emit(args.json, record, lines)


def _span(frame: pd.DataFrame, column: str) -> dict[str, str] | None:
    from batch_serving.features.training_files import time_range

    found = time_range(frame, column)
    return None if found is None else {"first": found[0], "last": found[1]}


def _span_text(span: dict[str, str] | None) -> str:
    return "no events" if span is None else f"{span['first']} .. {span['last']}"
