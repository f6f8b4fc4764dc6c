"""The ``spark_ml`` engine: a Spark ML pipeline scores the input DataFrame with ``transform``.

A Spark ML model is a JVM object the Arrow core cannot run, so this engine does in Spark what
the core does in Python for the other engines, and writes the same table: one predictions row
per scorable input row (entity ids, the served output, lineage) and one quarantine row per row
the pipeline cannot take. Reading, duplicate ids and keep_last are the dataframe engine's.

* The model is described and kept on the driver (``spark.ml_pipeline``; its ``driver``
  delivery ships nothing): a classifier's score is its ``probability`` vector at the index of
  the positive class, found by label; a regressor's is its ``prediction``.
* Features are cast as the run planned them (``try_cast``); a row with a feature that is null,
  NaN, or a string that does not parse is quarantined (``InvalidFeature``, ``CastError``)
  instead of failing the job as Spark ML's default ``handleInvalid="error"`` would.
* Observers that tolerate a task counted twice (the drift profile) count in one
  ``mapInArrow`` pass over the scored rows, as in the dataframe engine; the gates query Spark.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, from_arrow_type
from pyspark.sql.types import DoubleType, FloatType

from batch_serving.config import LoadingConfig
from batch_serving.errors import ModelLoadError
from batch_serving.models.adapters import SPARK_RUNTIME, LoadedModel, ModelSpec, OutputRequest
from batch_serving.models.adapters.base import classifier_or_regression_spec, resolve_features
from batch_serving.models.adapters.spark_ml import SparkPipelineFiles
from batch_serving.models.registry import ModelRef
from batch_serving.scoring.casts import cast_error_prefix
from batch_serving.scoring.isolation import CAST_ERROR_CLASS
from batch_serving.scoring.observers import TaskCounts, TaskSpec
from batch_serving.scoring.plan import ERROR_CLASS, ERROR_MESSAGE, ScoringPlan
from batch_serving.spark.delivery import DeliveryPlan, ModelHandle, driver_delivery
from batch_serving.spark.engines.base import InputData, Staging
from batch_serving.spark.engines.dataframe import DataFrameEngine, keep_last_rows, write_staged
from batch_serving.spark.ml_pipeline import Pipeline, pipeline_of
from batch_serving.spark.task_counts import TaskTotals, task_totals
from batch_serving.storage.files import count_rows

INVALID_FEATURE = "InvalidFeature"
_INPUT = "_bs_in_"  # prefix of the input columns beside the outputs while observers count


class SparkMLEngine(DataFrameEngine):
    name = "spark_ml"
    exact_counts = False  # the observers count inside mapInArrow, as in the dataframe engine

    def describe(
        self, spark: SparkSession, loaded: LoadedModel, request: OutputRequest, label: str
    ) -> ModelSpec:
        """Kind, features and positive class from the pipeline's stages (the configured
        features must be the columns the pipeline reads)."""
        pipeline = pipeline_of(spark, _files(loaded, label), label)
        features = resolve_features(request.features, pipeline.inputs, loaded.inputs, label)
        return classifier_or_regression_spec(
            SPARK_RUNTIME,
            pipeline.kind,
            pipeline.labels,
            features,
            "pandas",  # no float64 matrix: each column keeps its type (strings for indexers)
            loaded.inputs,
            request,
            label,
        )

    def deliver(
        self,
        spark: SparkSession,
        ref: ModelRef,
        loaded: LoadedModel,
        size_mb: float,
        loading: LoadingConfig,
        trusted: tuple[str, ...] = (),
    ) -> DeliveryPlan:
        return driver_delivery(ref, loaded.obj, size_mb)

    def stage(
        self,
        spark: SparkSession,
        data: InputData,
        plan: ScoringPlan,
        handles: list[ModelHandle],
        staging: Staging,
        duplicates: int,
        observe: TaskSpec | None = None,
    ) -> TaskCounts | None:
        served = plan.served
        pipeline = pipeline_of(spark, handles[0].get(), served.ref.uri)
        selected = data.native.select(*plan.input_columns)
        if duplicates:  # validation.duplicate_ids: keep_last
            selected = keep_last_rows(selected, plan.entity_columns)
        checked = checked_rows(selected, plan, served.spec.features)
        ok = F.col(ERROR_CLASS).isNull()
        scored = pipeline.scoring.transform(checked.filter(ok))
        spec = observe.retry_tolerant() if observe is not None else None
        totals = task_totals(spark, spec, staging.counts) if spec is not None else None
        columns = _prediction_columns(plan, pipeline)
        rows = scored.select(*columns)
        if spec is not None and totals is not None:
            rows = _counted(scored, columns, plan, spec, totals)
        write_staged(rows, staging.predictions)
        counts = totals.collect() if totals is not None else None
        if count_rows(staging.predictions) < data.rows - duplicates:
            # rare: some rows were not scorable; a second pass collects only them
            write_staged(_quarantined(checked.filter(~ok), plan).coalesce(1), staging.quarantine)
        return counts


def _files(loaded: LoadedModel, label: str) -> SparkPipelineFiles:
    if not isinstance(loaded.obj, SparkPipelineFiles):
        raise ModelLoadError(
            f"engine spark_ml scores models with MLmodel flavor '{SPARK_RUNTIME}'; {label} is "
            f"a {loaded.runtime} model: use engine: auto"
        )
    return loaded.obj


def checked_rows(frame: DataFrame, plan: ScoringPlan, features: tuple[str, ...]) -> DataFrame:
    """``frame`` with the planned feature casts applied and ``error_class``/``error_message``
    set on the rows the pipeline cannot take: a string that does not parse (``CastError``,
    worded as the core words it), else a null or NaN feature (``InvalidFeature``)."""
    classes: list[Column] = []
    messages: list[Column] = []
    values: dict[str, Column] = {}
    types = {f.name: f.dataType for f in frame.schema.fields}
    for name, cast in plan.casts.items():
        target = from_arrow_type(cast.target)
        values[name] = F.col(name).try_cast(target)
        types[name] = target
        bad = F.col(name).isNotNull() & values[name].isNull()
        text = F.concat(
            F.lit(cast_error_prefix(name)), F.col(name).cast("string"), F.lit(f"' to {cast.label}")
        )
        classes.append(F.when(bad, F.lit(CAST_ERROR_CLASS)))
        messages.append(F.when(bad, text))
    for name in features:
        value = values.get(name, F.col(name))
        nan = F.isnan(value) if isinstance(types[name], DoubleType | FloatType) else F.lit(False)
        classes.append(F.when(value.isNull() | nan, F.lit(INVALID_FEATURE)))
        messages.append(
            F.when(value.isNull(), F.lit(f"feature '{name}' is null")).when(
                nan, F.lit(f"feature '{name}' is NaN")
            )
        )
    return frame.withColumns(
        {**values, ERROR_CLASS: F.coalesce(*classes), ERROR_MESSAGE: F.coalesce(*messages)}
    )


def _outputs(plan: ScoringPlan, pipeline: Pipeline) -> list[Column]:
    """The served model's output columns (``ModelSpec.output_fields``) from the pipeline's."""
    spec = plan.served.spec
    names = [f.name for f in spec.output_fields()]
    if spec.kind == "regression":
        return [F.col(pipeline.prediction_col).alias(names[0])]
    probabilities = vector_to_array(F.col(str(pipeline.probability_col)))
    if spec.kind == "binary":
        return [probabilities[int(spec.positive_index or 0)].alias(names[0])]
    classes = F.array(*[F.lit(c) for c in spec.classes])
    best = F.array_position(probabilities, F.array_max(probabilities)).cast("int")
    return [
        F.map_from_arrays(classes, probabilities).alias(names[0]),
        F.element_at(classes, best).alias(names[1]),
    ]


def _lineage(plan: ScoringPlan, run: str | None) -> list[Column]:
    """Model name and version, a run id (the model's run, or the scoring run's for a
    quarantined row) and ``scored_at``: the lineage columns the core writes."""
    ref = plan.served.ref
    return [
        F.lit(ref.name),
        F.lit(ref.version),
        F.lit(run),
        F.lit(plan.scored_at),
    ]


def _conformed(columns: list[Column], schema: pa.Schema) -> list[Column]:
    """``columns`` named and typed as ``schema`` says (the table every engine writes)."""
    fields = from_arrow_schema(schema).fields
    return [c.cast(f.dataType).alias(f.name) for c, f in zip(columns, fields, strict=True)]


def _prediction_columns(plan: ScoringPlan, pipeline: Pipeline) -> list[Column]:
    ids = [F.col(c) for c in plan.entity_columns]
    lineage = _lineage(plan, plan.served.ref.run_id)
    return _conformed([*ids, *_outputs(plan, pipeline), *lineage], plan.output_schema)


def _quarantined(bad: DataFrame, plan: ScoringPlan) -> DataFrame:
    ids = [F.col(c) for c in plan.entity_columns]
    errors = [F.col(ERROR_CLASS), F.col(ERROR_MESSAGE)]
    lineage = _lineage(plan, plan.run_id)
    return bad.select(*_conformed([*ids, *errors, *lineage], plan.quarantine_schema))


def _counted(
    scored: DataFrame, columns: list[Column], plan: ScoringPlan, spec: TaskSpec, totals: TaskTotals
) -> DataFrame:
    """The predictions rows, after each task's observers counted its input and predictions:
    one ``mapInArrow`` pass that carries the input columns beside the outputs, then drops them."""
    inputs = plan.input_columns
    carried = [F.col(c).alias(f"{_INPUT}{i}") for i, c in enumerate(inputs)]
    names = list(plan.output_schema.names)

    def count(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        counts = spec.partial()
        for batch in batches:
            read = pa.RecordBatch.from_arrays(
                [batch.column(f"{_INPUT}{i}") for i in range(len(inputs))], names=inputs
            )
            written = batch.select(names)
            counts.add(spec, read, written)
            yield written
        totals.add(counts)

    schema = scored.select(*columns).schema
    return scored.select(*carried, *columns).mapInArrow(count, schema)
