"""The ``training-set`` command's work: read an event history from files, build the training set
with ``offline.training_set`` (the library call, unchanged), check it against the stream's
scored rows, write it as one Parquet file atomically. pandas and pyarrow only: no Spark.

    read_frame(--events) -> [accepted by the stream] -> training_set -> [check] -> write_atomic
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batch_serving.errors import (
    ConfigError,
    FeatureMismatchError,
    InputNotFoundError,
    MissingColumnsError,
    StorageError,
)
from batch_serving.features.offline import feature_mismatches, to_micros, training_set
from batch_serving.features.spec import WindowSpec

PARQUET = frozenset({".parquet", ".pq"})
JSON_LINES = frozenset({".json", ".jsonl", ".ndjson"})
CSV = frozenset({".csv"})


@dataclass(frozen=True)
class TrainingSet:
    """A built training set and what the summary says about it."""

    frame: pd.DataFrame
    history_events: int
    left_out: int  # events of the history the stream did not score (late or pending)


@dataclass(frozen=True)
class CheckResult:
    """Online == offline over ``rows`` events the stream scored."""

    rows: int
    keys: tuple[str, ...]


def read_frame(path: Path, what: str) -> pd.DataFrame:
    """A Parquet, CSV or JSON-lines file, or a directory of them (read recursively; names
    starting with ``_`` or ``.`` skipped, as Spark does). String event times stay strings
    here: ``to_micros`` parses them."""
    files = _data_files(path, what)
    frames = [_read_one(f) for f in files]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str, path: Path) -> None:
    """Raises naming every missing column, the file and what is there."""
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise MissingColumnsError(missing, list(frame.columns), f"{what} {path}")


def build(
    events: pd.DataFrame,
    spec: WindowSpec,
    rows: pd.DataFrame | None,
    keep: Sequence[str] | None,
    accepted: pd.DataFrame | None = None,
    keys: Sequence[str] = (),
) -> TrainingSet:
    """The training set of ``rows`` (default: every event) over ``events``; with ``accepted``
    (the stream's scored rows) only the events the stream took are history, as the stream's
    own windows saw them. ``keep``: the row columns kept beside the entity, time and features."""
    history = events if accepted is None else accepted_events(events, accepted, keys)
    built = training_set(history, spec, rows)
    if keep is not None:
        wanted = list(dict.fromkeys([spec.entity, spec.event_time, *keep, *spec.names]))
        built = built[wanted]
    return TrainingSet(built, len(history), len(events) - len(history))


def accepted_events(
    events: pd.DataFrame, scored: pd.DataFrame, keys: Sequence[str]
) -> pd.DataFrame:
    """The events whose ``keys`` are among the stream's scored (or quarantined) rows: an event
    it dropped as late never entered its windows, one still pending precedes none it scored."""
    unique_keys(events, keys, "the event history")
    taken = scored[list(keys)].drop_duplicates()
    return events.merge(taken, on=list(keys), how="inner").reset_index(drop=True)


def check(
    scored: pd.DataFrame, offline: pd.DataFrame, spec: WindowSpec, keys: Sequence[str]
) -> CheckResult:
    """Raises ``FeatureMismatchError`` naming the first event (by key) whose features differ
    between the stream's rows and the offline recomputation, with both values."""
    unique_keys(scored, keys, "the stream's output")
    columns = [*keys, *spec.names]
    bad = feature_mismatches(scored[columns], offline[columns], spec, keys)
    if not bad.empty:
        raise FeatureMismatchError(_first_mismatch(bad, spec, keys, len(scored)))
    return CheckResult(len(scored), tuple(keys))


def unique_keys(frame: pd.DataFrame, keys: Sequence[str], what: str) -> None:
    twice = frame[frame.duplicated(list(keys), keep=False)]
    if not twice.empty:
        example = twice.iloc[0][list(keys)].to_dict()
        raise ConfigError(
            f"{list(keys)} do not identify one event in {what} ({len(twice)} rows share a key, "
            f"e.g. {example}): pass --key with the columns that do"
        )


def write_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """One Parquet file, written beside ``path`` and renamed over it: a reader sees the old
    file or the new one, and a failure leaves the old one as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write the training set {path}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def time_range(frame: pd.DataFrame, column: str) -> tuple[str, str] | None:
    """First and last event time (ISO 8601, UTC) of ``frame``; None when empty."""
    if frame.empty:
        return None
    micros = to_micros(frame[column])
    first, last = (pd.Timestamp(int(m), unit="us", tz="UTC") for m in (micros.min(), micros.max()))
    return first.isoformat(), last.isoformat()


def _first_mismatch(bad: pd.DataFrame, spec: WindowSpec, keys: Sequence[str], total: int) -> str:
    row = bad.sort_values(list(keys), kind="stable").iloc[0]
    key = {k: _plain(row[k]) for k in keys}
    where = f"{len(bad)} of {total} scored events differ; first: event {key}"
    if row["_merge"] == "left_only":
        return f"{where} is in the stream's output but not in the event history"
    if row["_merge"] == "right_only":
        return f"{where} is in the event history but not in the stream's output"
    for feature in spec.features:
        a, b = row[f"{feature.name}_served"], row[f"{feature.name}_offline"]
        if not _same(a, b, feature.integral):
            return f"{where}: {feature.name} is {_plain(a)} in the stream, {_plain(b)} offline"
    return where  # pragma: no cover - feature_mismatches flagged the row for a feature


def _same(a: object, b: object, integral: bool) -> bool:
    x, y = float(a), float(b)  # type: ignore[arg-type]
    if integral:
        return x == y
    return bool(np.isclose(x, y, rtol=1e-9, atol=1e-9, equal_nan=True))


def _plain(value: object) -> object:
    """A value as the message prints it: numpy scalars as Python ones, NaN as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _data_files(path: Path, what: str) -> list[Path]:
    if not path.exists():
        raise InputNotFoundError(f"{what} {path} does not exist")
    if path.is_file():
        return [path]
    known = PARQUET | JSON_LINES | CSV
    files = sorted(
        f
        for f in path.rglob("*")
        if f.is_file()
        and f.suffix.lower() in known
        and not any(p.startswith(("_", ".")) for p in f.relative_to(path).parts)
    )
    if not files:
        raise InputNotFoundError(f"{what} {path} holds no Parquet, CSV or JSON-lines files")
    return files


def _read_one(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in CSV:
            return pd.read_csv(path)
        if suffix in JSON_LINES:
            return pd.read_json(path, lines=True, convert_dates=False, dtype=False)
        return pq.read_table(path).to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
