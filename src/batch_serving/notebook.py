"""A notebook-friendly Python API: score a frame with a registered model, read committed
predictions. Both are read-only: nothing is committed, published, registered or logged.

``score_frame`` runs the same pieces as a scoring job, in the same order: it pins the
registry alias once (``models.registry``), loads and describes the model (``models.loading``),
plans the casts and output columns (``scoring.plan``) and scores with the scoring core
(``scoring.batch``), in process for an Arrow table or a pandas DataFrame, or inside Spark tasks
with ``mapInArrow`` for a Spark DataFrame (``spark.engines.dataframe``, the model broadcast
once by ``spark.delivery``; on a Spark Connect DataFrame the model directory is shipped once as
a session artifact instead). So its scores are the job's scores for the same model version.

``read_predictions`` reads one committed partition of a job's predictions table as a pyarrow
Table (``.to_pandas()`` for pandas).

Example, after ``make demo``:

    from batch_serving.notebook import read_predictions, score_frame

    nightly = read_predictions("conf/jobs/churn.yaml", "2026-11-22")
    fresh = score_frame(
        features,                            # a pyarrow Table, pandas or Spark DataFrame
        "models:/churn@champion",
        tracking_uri="sqlite:///mlruns/mlflow.db",
        keep=["customer_id"],
    )
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa

from batch_serving.config import JobConfig, LoadingConfig, ModelConfig
from batch_serving.config.loader import load_config, parse_run_date
from batch_serving.config.members import CHAMPION
from batch_serving.errors import ConfigError, InputNotFoundError, MissingColumnsError, StorageError
from batch_serving.models.adapters import OutputRequest
from batch_serving.models.loading import load_and_describe
from batch_serving.models.registry import resolve_model
from batch_serving.models.uris import parse_model_uri
from batch_serving.scoring.batch import BatchScorer, tagged
from batch_serving.scoring.plan import (
    ERROR_FIELDS,
    LINEAGE_FIELDS,
    Member,
    ScoringPlan,
    build_plan,
)
from batch_serving.storage import Location
from batch_serving.storage.files import data_files, read_table
from batch_serving.tables.layout import PARTITION_COLUMN, predictions_layout
from batch_serving.tables.manifest import read_manifest

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["parse_model_uri", "read_predictions", "score_frame"]

_KEEP = "__bs_keep__"  # a kept column the model also reads travels under this prefix
_ROW = "__bs_row__"  # input row number (Arrow path): output rows keep the input's order
_BATCH_ROWS = 10_000
_READ_ATTEMPTS = 3


def score_frame(
    data: pa.Table | pd.DataFrame | DataFrame,
    model_uri: str,
    *,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    keep: Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    positive_label: str | int | bool | None = None,
    score_column: str = "score",
    skops_trusted_types: Sequence[str] = (),
) -> pa.Table | pd.DataFrame | DataFrame:
    """Score ``data`` with a registered model, exactly as a scoring job would; commit nothing.

    Args:
        data: the rows to score: a pyarrow Table, a pandas DataFrame or a Spark DataFrame
            (classic or Spark Connect). The result has the same kind: an Arrow table or a
            pandas DataFrame (scored in this process, rows in input order, the pandas index
            kept), or a lazy Spark DataFrame scored by ``mapInArrow`` when an action runs
            (the model is broadcast once, or under Connect added once as a session artifact,
            and loaded once per Python worker).
        model_uri: ``models:/<name>@<alias>`` or ``models:/<name>/<version>``. An alias is
            pinned to one version once, before any row is scored.
        tracking_uri: MLflow tracking URI of the registry; default: MLflow's current one
            (``mlflow.set_tracking_uri`` or ``MLFLOW_TRACKING_URI``).
        registry_uri: MLflow registry URI, if it differs from the tracking URI.
        keep: input columns carried to the output, in this order; default: all of them.
        features: the model's input columns when its signature does not name them.
        positive_label: binary classifiers: the class whose probability is the score
            (default ``1`` or ``True``).
        score_column: name of a binary classifier's score column.
        skops_trusted_types: extra skops types to trust when loading the model.

    Returns:
        One row per input row: the ``keep`` columns; the model's outputs (binary:
        ``score``; multi-class: ``probabilities``, ``predicted_label``; regression and other
        pyfunc models: ``prediction``); ``error_class`` and ``error_message``, null unless the
        row could not be scored (then the outputs are null: a job would quarantine it); and
        the lineage ``model_name``, ``model_version``, ``model_run_id``, ``scored_at``.

    Raises:
        ConfigError: a malformed ``model_uri``, or a kept column named like an output column.
        RegistryError: the registry is unreachable, or the model, alias or version unknown.
        MissingColumnsError: a feature or ``keep`` column is not in ``data``.
        ColumnTypeError: a feature's type cannot be converted to the model's.

    Example:
        >>> scored = score_frame(features, "models:/churn@champion", keep=["customer_id"])
        >>> scored.column_names  # doctest: +SKIP
        ['customer_id', 'score', 'error_class', 'error_message', 'model_name', ...]
    """
    table = None if _is_spark(data) else _as_arrow(data)
    columns = list(data.columns) if table is None else table.column_names
    kept = list(columns if keep is None else keep)
    where = f"score_frame input ({type(data).__name__})"
    absent = [c for c in kept if c not in columns]
    if absent:
        raise MissingColumnsError(absent, columns, where)
    model = _model_config(
        model_uri, tracking_uri, registry_uri, positive_label, tuple(skops_trusted_types)
    )
    request = OutputRequest(
        features=tuple(features) if features is not None else None,
        positive_label=positive_label,
        score_column=score_column,
    )
    ref = resolve_model(model)
    with tempfile.TemporaryDirectory(prefix="bs-notebook-") as tmp:
        spec, loaded, model_dir = load_and_describe(model, request, ref, tmp)
        member = Member(CHAMPION, ref, spec)
        _check_names(kept, spec.output_fields())
        if table is None:
            frame = cast("DataFrame", data)
            return _score_spark(frame, member, loaded.obj, model_dir, model, kept, where)
    scored = _score_arrow(table, member, loaded.obj, kept, where)
    if isinstance(data, pd.DataFrame):
        result = scored.to_pandas()
        result.index = data.index
        return result
    return scored


def read_predictions(
    config: JobConfig | str | Path,
    run_date: dt.date | str,
    *,
    columns: Sequence[str] | None = None,
    env: str | None = None,
) -> pa.Table:
    """One committed partition of a job's predictions table, as a pyarrow Table.

    Args:
        config: the job: a ``JobConfig`` or the path of its YAML file.
        run_date: the partition's date (``datetime.date`` or ``YYYY-MM-DD``).
        columns: columns to read; default: all.
        env: with a path, the overlay to merge (like ``--env``).

    Returns:
        The partition's rows (entity ids, served outputs, member structs, lineage) plus the
        partition column ``ds`` (``date32``), as ``SELECT * FROM predictions.<model> WHERE
        ds = ...`` would return them. Types are exact (``map``, ``struct``, UTC timestamps);
        ``.to_pandas()`` converts.

    Raises:
        InputNotFoundError: the date has no committed partition (none, or no manifest: not
            written by a successful run); the message lists the latest committed dates.
        StorageError: the partition was replaced by a new run while it was being read, on
            every attempt.

    Example:
        >>> nightly = read_predictions("conf/jobs/churn.yaml", "2026-11-22")
        >>> nightly.to_pandas().nlargest(10, "score")  # doctest: +SKIP
    """
    cfg = config if isinstance(config, JobConfig) else load_config(config, env=env)
    day = _as_date(run_date)
    layout = predictions_layout(cfg.output.root, cfg.model.name, cfg.storage)
    partition = layout.partition_dir(day)
    for _ in range(_READ_ATTEMPTS):
        partition = layout.committed_dir(day)  # object stores: the run the pointer names
        manifest = read_manifest(partition) if partition.is_dir() else None
        if manifest is None:
            raise InputNotFoundError(
                f"no committed predictions for {day} in {layout.table_dir}; committed "
                f"dates: {layout.committed_dates()[-5:] or 'none'}"
            )
        try:
            table = _read_files(data_files(partition), columns)
        except FileNotFoundError:  # a new run swapped the partition in while we read it
            continue
        if layout.current_run_id(day) == manifest.run_id:
            dates = pa.array(np.full(table.num_rows, day), pa.date32())
            return table.append_column(pa.field(PARTITION_COLUMN, pa.date32()), dates)
    raise StorageError(
        f"{partition} was replaced by another run while it was read, {_READ_ATTEMPTS} times"
    )


def _model_config(
    model_uri: str,
    tracking_uri: str | None,
    registry_uri: str | None,
    positive_label: str | int | bool | None,
    trusted: tuple[str, ...],
) -> ModelConfig:
    name, alias, version = parse_model_uri(model_uri)
    if tracking_uri is None:
        import mlflow

        tracking_uri = mlflow.get_tracking_uri()
    return ModelConfig(
        name=name,
        alias=alias,
        version=version,
        tracking_uri=tracking_uri,
        registry_uri=registry_uri,
        positive_label=positive_label,
        skops_trusted_types=trusted,
    )


def _plan(
    member: Member, kept: list[str], schema: pa.Schema, where: str, row: list[str]
) -> ScoringPlan:
    """The single-member plan whose entity columns are ``row`` + the kept columns (a kept
    feature under its ``_KEEP`` alias, so the model still gets its cast copy)."""
    entities = [*row, *(_carried(c, member) for c in kept)]
    now = dt.datetime.now(dt.UTC)
    return build_plan([member], entities, schema, f"notebook-{now:%Y%m%dT%H%M%S}", now, where)


def _carried(column: str, member: Member) -> str:
    return _KEEP + column if column in member.spec.features else column


def _result_columns(plan: ScoringPlan, kept: list[str], member: Member) -> list[tuple[str, str]]:
    """(column in the tagged output, name in the result), in result order."""
    values = [f.name for f in [*plan.served_fields, *ERROR_FIELDS, *LINEAGE_FIELDS]]
    return [(_carried(c, member), c) for c in kept] + [(v, v) for v in values]


def _score_arrow(
    table: pa.Table, member: Member, model: Any, kept: list[str], where: str
) -> pa.Table:
    """In process, batch by batch through the scoring core; rows back in input order."""
    rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
    table = table.append_column(_ROW, rows)
    for column in kept:
        if _carried(column, member) != column:
            table = table.append_column(_KEEP + column, table.column(column))
    plan = _plan(member, kept, table.schema, where, [_ROW])
    scorer, schema = BatchScorer(plan, [model]), plan.tagged_schema
    parts: list[pa.RecordBatch] = []
    for batch in table.select(plan.input_columns).to_batches(max_chunksize=_BATCH_ROWS):
        parts.extend(tagged(scorer.score(batch), schema))
    scored = pa.Table.from_batches(parts, schema=schema).sort_by(_ROW)
    pairs = _result_columns(plan, kept, member)
    return scored.select([s for s, _ in pairs]).rename_columns([r for _, r in pairs])


def _score_spark(
    data: DataFrame,
    member: Member,
    model: Any,
    model_dir: Path,
    cfg: ModelConfig,
    kept: list[str],
    where: str,
) -> DataFrame:
    """Lazily, in Spark tasks: the dataframe engine's ``mapInArrow`` over the scoring core."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    from batch_serving.models.artifacts import directory_size_mb
    from batch_serving.spark.delivery import plan_delivery
    from batch_serving.spark.engines.dataframe import score_frame as score_in_spark

    aliases = [F.col(c).alias(_KEEP + c) for c in kept if _carried(c, member) != c]
    frame = data.select("*", *aliases)
    schema = to_arrow_schema(frame.schema, timezone="UTC")
    plan = _plan(member, kept, schema, where, [])
    spark = data.sparkSession
    size_mb = directory_size_mb(model_dir)
    delivery = plan_delivery(
        spark, member.ref, model, size_mb, LoadingConfig(), cfg.skops_trusted_types
    )
    scored = score_in_spark(frame.select(*plan.input_columns), plan, [delivery.handle])
    return scored.select(*[F.col(s).alias(r) for s, r in _result_columns(plan, kept, member)])


def _check_names(kept: list[str], outputs: list[pa.Field]) -> None:
    taken = [f.name for f in [*outputs, *ERROR_FIELDS, *LINEAGE_FIELDS]]
    clash = [c for c in kept if c in taken]
    if clash:
        raise ConfigError(
            f"kept columns {clash} have the names of output columns {taken}; leave them out "
            "with keep=[...] (or rename the score with score_column=...)"
        )


def _is_spark(data: object) -> bool:
    """A classic or a Spark Connect DataFrame (``pyspark.sql.DataFrame`` is the base of both)."""
    from pyspark.sql import DataFrame

    return isinstance(data, DataFrame)


def _as_arrow(data: object) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise ConfigError(
        f"score_frame scores a pyarrow Table, a pandas DataFrame or a Spark DataFrame; "
        f"got {type(data).__name__}"
    )


def _as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return parse_run_date(value)


def _read_files(files: list[Location], columns: Sequence[str] | None) -> pa.Table:
    if not files:
        return pa.table({})
    wanted = list(columns) if columns is not None else None
    tables = [read_table(f, columns=wanted) for f in files]
    return pa.concat_tables(tables, promote_options="permissive")
