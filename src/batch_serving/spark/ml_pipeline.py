"""A Spark ML pipeline model read on the driver: loaded once, and what a run scores with.

``mlflow.spark.load_model`` loads the ``PipelineModel`` (copying it to the cluster's
filesystem when that is not the driver's local one). From its stages we take, once:

* the prediction stage (the last ``PredictionModel``): a probabilistic classifier is scored by
  its ``probability`` vector, a regressor by its ``prediction``; a classifier without
  probabilities gives class labels, not scores, and is refused (exit 3);
* the class labels by index: a ``StringIndexerModel`` that indexed the classifier's label
  column names them (``labelsArray``, in index order), else they are the indices "0".."k-1";
* the stages that score rows: every stage except the ones that index the label (the label
  is not in the rows a run scores);
* the input columns those stages read that no earlier stage produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.base import PredictionModel
from pyspark.ml.classification import ClassificationModel, ProbabilisticClassificationModel
from pyspark.ml.feature import StringIndexerModel
from pyspark.sql import SparkSession

from batch_serving.errors import ModelLoadError
from batch_serving.models.adapters.base import Kind
from batch_serving.models.adapters.spark_ml import SparkPipelineFiles
from batch_serving.models.cache import MAX_MODELS, LruCache

_INPUTS = ("inputCol", "inputCols", "featuresCol")
_OUTPUTS = ("outputCol", "outputCols", "predictionCol", "probabilityCol", "rawPredictionCol")


@dataclass(frozen=True)
class Pipeline:
    """What a run scores a Spark ML model with (see the module docstring)."""

    scoring: PipelineModel
    kind: Kind
    labels: tuple[str, ...]  # classifiers: class i's label; regressors: ()
    inputs: tuple[str, ...]
    prediction_col: str
    probability_col: str | None  # classifiers only


_PIPELINES: LruCache[tuple[str, str], Pipeline] = LruCache(MAX_MODELS)


def pipeline_of(spark: SparkSession, files: SparkPipelineFiles, label: str) -> Pipeline:
    """The pipeline of ``files``, read once per Spark application (its JVM objects live
    there), so describing the model and scoring it use one load."""
    key = (str(spark.conf.get("spark.app.id", "")), files.pipeline)
    return _PIPELINES.get_or_load(key, lambda: read_pipeline(files, label))[0]


def read_pipeline(files: SparkPipelineFiles, label: str) -> Pipeline:
    import mlflow.spark

    if files.model_class.startswith("pyspark.ml.connect."):
        raise ModelLoadError(
            f"{label} is a Spark Connect ML model ({files.model_class}); log a pyspark.ml "
            "PipelineModel with mlflow.spark.log_model"
        )
    try:
        model = mlflow.spark.load_model(files.model_dir)
    except Exception as exc:
        raise ModelLoadError(f"{label}: cannot load its Spark ML pipeline: {exc}") from None
    if not isinstance(model, PipelineModel):
        raise ModelLoadError(f"{label}: expected a Spark ML PipelineModel, got {type(model)}")
    return inspect(model, label)


def inspect(model: PipelineModel, label: str) -> Pipeline:
    """Kind, class labels, scoring stages and input columns of a loaded pipeline."""
    stages = list(_flat(model))
    predictor = _predictor(stages, label)
    label_col = _param(predictor, "labelCol")
    label_indexers = [s for s in stages if _indexes(s, label_col)]
    scoring = [s for s in stages if not any(s is i for i in label_indexers)]
    kind, labels = _kind(predictor, label_indexers, label)
    return Pipeline(
        scoring=PipelineModel(stages=scoring),
        kind=kind,
        labels=labels,
        inputs=_inputs(scoring),
        prediction_col=str(predictor.getPredictionCol()),
        probability_col=str(predictor.getProbabilityCol()) if kind != "regression" else None,
    )


def _flat(model: PipelineModel) -> Iterator[Transformer]:
    for stage in model.stages:
        if isinstance(stage, PipelineModel):
            yield from _flat(stage)
        else:
            yield stage


def _predictor(stages: list[Transformer], label: str) -> Any:
    found = [s for s in stages if isinstance(s, PredictionModel)]
    if not found:
        names = [type(s).__name__ for s in stages]
        raise ModelLoadError(
            f"{label}: its Spark ML pipeline {names} has no prediction stage (a classifier or "
            "regressor model); log the fitted pipeline that ends in one"
        )
    predictor = found[-1]
    if isinstance(predictor, ClassificationModel) and not isinstance(
        predictor, ProbabilisticClassificationModel
    ):
        raise ModelLoadError(
            f"{label}: its Spark ML classifier {type(predictor).__name__} has no probability "
            "column, so its predictions are class labels, not scores; use a probabilistic "
            "classifier (e.g. LogisticRegression, RandomForestClassifier, GBTClassifier)"
        )
    return predictor


def _kind(
    predictor: Any, label_indexers: list[Transformer], label: str
) -> tuple[Kind, tuple[str, ...]]:
    """A classifier's kind and labels by index; any other predictor is a regression."""
    if not isinstance(predictor, ProbabilisticClassificationModel):
        return "regression", ()
    classes = int(predictor.numClasses)
    labels = tuple(str(i) for i in range(classes))
    if label_indexers:
        indexer = label_indexers[-1]
        assert isinstance(indexer, StringIndexerModel)
        named = tuple(str(v) for v in indexer.labelsArray[0])
        if len(named) != classes:
            raise ModelLoadError(
                f"{label}: the label indexer of its Spark ML pipeline knows {len(named)} labels "
                f"{list(named)} but the classifier has {classes} classes"
            )
        labels = named
    return ("multiclass" if classes > 2 else "binary"), labels


def _indexes(stage: Transformer, label_col: str | None) -> bool:
    """A StringIndexerModel that writes the classifier's label column (fit-time only)."""
    return (
        label_col is not None
        and isinstance(stage, StringIndexerModel)
        and _param(stage, "outputCol") == label_col
    )


def _inputs(stages: list[Transformer]) -> tuple[str, ...]:
    """Columns the stages read that no earlier stage wrote, in the order first read."""
    produced: set[str] = set()
    inputs: list[str] = []
    for stage in stages:
        for name in _columns(stage, _INPUTS):
            if name not in produced and name not in inputs:
                inputs.append(name)
        produced.update(_columns(stage, _OUTPUTS))
    return tuple(inputs)


def _columns(stage: Transformer, params: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for name in params:
        value = _param(stage, name)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            found.extend(str(v) for v in value)
    return found


def _param(stage: Any, name: str) -> Any:
    """A stage's param value (set or default), or None if it has no such param."""
    if not stage.hasParam(name):
        return None
    param = stage.getParam(name)
    return stage.getOrDefault(param) if stage.isDefined(param) else None
