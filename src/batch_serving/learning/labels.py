"""Labels in: match each labelled outcome to what was scored, point in time.

A label (entity, label, event time) is matched to the LATEST prediction of that entity that
existed at or before its event time (never a later one: that score did not exist when the
outcome happened), and through the prediction's partition date to the feature row the model
read. So the learner and the gates see exactly the features and score of the decision.

``point_in_time_join`` and ``attach_features`` are pure (pandas in, pandas out);
``matched_labels`` reads the three tables of a job from disk and calls them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from batch_serving.config import JobConfig
from batch_serving.errors import InputNotFoundError, MissingColumnsError
from batch_serving.learning.settings import LabelsConfig
from batch_serving.storage.files import data_files, read_tables
from batch_serving.tables.inputs import partition_path
from batch_serving.tables.layout import PARTITION_COLUMN

PREDICTION_TIME = "prediction_time"
SCORE = "scored"  # the served score, renamed so a feature or label column cannot clash


@dataclass(frozen=True)
class Matched:
    """Labels matched to their prediction and features; counts of those left out and why."""

    rows: pd.DataFrame
    labels: int  # labels read
    unmatched: int  # no prediction of the entity at or before the event time
    without_features: int  # the prediction's feature row is absent from its input partition
    columns: tuple[str, ...] = ()  # the input columns attached to each row


def point_in_time_join(
    labels: pd.DataFrame,
    predictions: pd.DataFrame,
    entity: str,
    cfg: LabelsConfig,
    score_column: str = "score",
) -> tuple[pd.DataFrame, int]:
    """Each label with the latest prediction of its entity at or before its event time;
    returns the matched rows and how many labels had no such prediction."""
    _require(labels, [entity, cfg.label_column, cfg.event_time_column], "the labels")
    _require(predictions, [entity, score_column, cfg.prediction_time_column], "the predictions")
    left = labels.drop(columns=[PARTITION_COLUMN], errors="ignore")
    left = left.assign(**{cfg.event_time_column: _utc(left[cfg.event_time_column])})
    wanted = (entity, score_column, PARTITION_COLUMN, "model_version")
    keep = [c for c in wanted if c in predictions]
    right = predictions[keep].assign(
        **{PREDICTION_TIME: _utc(predictions[cfg.prediction_time_column])}
    )
    right = right.rename(columns={score_column: SCORE}).dropna(subset=[PREDICTION_TIME])
    joined = pd.merge_asof(
        left.sort_values(cfg.event_time_column),
        right.sort_values(PREDICTION_TIME),
        left_on=cfg.event_time_column,
        right_on=PREDICTION_TIME,
        by=entity,
        direction="backward",
        allow_exact_matches=True,
    )
    matched = joined.dropna(subset=[PREDICTION_TIME]).reset_index(drop=True)
    return matched, len(joined) - len(matched)


def attach_features(
    matched: pd.DataFrame, features: pd.DataFrame, entity: str, columns: tuple[str, ...]
) -> tuple[pd.DataFrame, int]:
    """The feature row the prediction was made from: same entity, same partition date."""
    _require(features, [entity, PARTITION_COLUMN, *columns], "the input features")
    right = features[[entity, PARTITION_COLUMN, *columns]].drop_duplicates(
        [entity, PARTITION_COLUMN], keep="last"
    )
    left = matched.drop(columns=[c for c in columns if c in matched.columns])
    joined = left.merge(right, on=[entity, PARTITION_COLUMN], how="left", indicator=True)
    found = joined["_merge"] == "both"
    return joined.loc[found].drop(columns="_merge").reset_index(drop=True), int((~found).sum())


def matched_labels(
    job: JobConfig,
    cfg: LabelsConfig,
    features: tuple[str, ...] | None,
    start: dt.date,
    end: dt.date,
) -> Matched:
    """Labels of days ``start``..``end`` matched to the job's predictions and input rows.

    ``features`` are the input columns attached to each label (the learner's); None attaches
    every input column but the entity, label and event time, which ``promote`` needs: the
    champion may read columns the learner does not."""
    labels = read_days(Path(cfg.path), cfg.partition_column, start, end, "labels")
    predictions = _predictions(job, start - dt.timedelta(days=cfg.lookback_days), end)
    return _match(job, cfg, features, labels, predictions)


def match_labels(
    job: JobConfig, cfg: LabelsConfig, features: tuple[str, ...], labels: pd.DataFrame
) -> Matched:
    """Labels already read (a stream's micro-batch) matched like ``matched_labels``: against
    the predictions of their event days and ``lookback_days`` before. No committed
    prediction in that range leaves every label unmatched (counted, not an error: a stream
    keeps running)."""
    if len(labels) == 0:
        return Matched(labels.iloc[0:0], 0, 0, 0, features)
    times = _utc(labels[cfg.event_time_column])
    start, end = times.min().date(), times.max().date()
    try:
        predictions = _predictions(job, start - dt.timedelta(days=cfg.lookback_days), end)
    except InputNotFoundError:
        return Matched(labels.iloc[0:0], len(labels), len(labels), 0, features)
    return _match(job, cfg, features, labels, predictions)


def _match(
    job: JobConfig,
    cfg: LabelsConfig,
    features: tuple[str, ...] | None,
    labels: pd.DataFrame,
    predictions: pd.DataFrame,
) -> Matched:
    entity = job.entity_columns[0]
    matched, unmatched = point_in_time_join(
        labels, predictions, entity, cfg, job.output.score_column
    )
    days = sorted({d for d in matched[PARTITION_COLUMN]}) if len(matched) else []
    inputs = _inputs(job, days, None if features is None else [entity, *features])
    taken = (entity, PARTITION_COLUMN, cfg.label_column, cfg.event_time_column)
    columns = features or tuple(c for c in inputs.columns if c not in taken)
    rows, without = attach_features(matched, inputs, entity, columns)
    return Matched(rows, len(labels), unmatched, without, columns)


def read_days(
    root: Path, partition_column: str, start: dt.date, end: dt.date, what: str
) -> pd.DataFrame:
    """Every ``<col>=YYYY-MM-DD`` partition of ``root`` between start and end, as one frame."""
    frames = []
    day = start
    while day <= end:
        partition = root / f"{partition_column}={day.isoformat()}"
        if partition.is_dir():
            frames.append(read_tables(data_files(partition)).to_pandas())
        day += dt.timedelta(days=1)
    if not frames:
        raise InputNotFoundError(f"no {what} partitions between {start} and {end} under {root}")
    return pd.concat(frames, ignore_index=True)


def _predictions(job: JobConfig, start: dt.date, end: dt.date) -> pd.DataFrame:
    from batch_serving.notebook import read_predictions

    frames = []
    day = start
    while day <= end:
        with contextlib.suppress(InputNotFoundError):  # no scoring run that day
            frames.append(read_predictions(job, day).to_pandas())
        day += dt.timedelta(days=1)
    if not frames:
        raise InputNotFoundError(
            f"no committed predictions of {job.model.name} between {start} and {end}"
        )
    return pd.concat(frames, ignore_index=True)


def _inputs(job: JobConfig, days: list[dt.date], columns: list[str] | None) -> pd.DataFrame:
    """The input rows of ``days`` (``columns``; None: all), each with its day as ``ds``."""
    frames = []
    for day in days:
        partition = Path(partition_path(job.input, pd.Timestamp(day).date()))
        if partition.is_dir():
            frame = read_tables(data_files(partition), columns).to_pandas()
            frames.append(frame.assign(**{PARTITION_COLUMN: day}))
    if not frames:
        return pd.DataFrame(columns=[*(columns or [job.entity_columns[0]]), PARTITION_COLUMN])
    return pd.concat(frames, ignore_index=True)


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps as UTC; a date (the ``ds`` column) is its midnight UTC."""
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


def _require(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingColumnsError(missing, list(frame.columns), where)
