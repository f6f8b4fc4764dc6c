"""Spark ML pipelines (the ``spark`` flavor): kept on disk here, scored by Spark itself.

A ``pyspark.ml`` PipelineModel is a JVM object that scores a DataFrame with ``transform``;
the Arrow scoring core cannot run it. So this adapter only keeps the artifact: ``load``
copies the MLflow model directory to one the process owns (the download is temporary) and
returns its path. The ``spark_ml`` engine (``spark/engines/spark_ml.py``) loads the pipeline
from there on the driver, describes it and scores with ``transform``. Everything that scores
through the core (multi-model plans, the stream, the lookup API's live path, the embedded
scorer, the notebook API) asks this adapter to ``describe`` the model and is refused there, on
the driver, before any row is scored (``ModelLoadError``, exit 3), naming the flavor and what
to do. No pyspark here.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pyarrow as pa

from batch_serving.errors import ModelLoadError
from batch_serving.models.adapters.base import Adapter, ModelInputSpec, ModelSpec, OutputRequest

FLAVOR = "spark"

SPARK_ML = (
    "a Spark ML pipeline is scored by its own transform inside Spark, which only a batch run "
    "of that one model does (`batch-serving score`, engine auto or spark_ml). Members, "
    "ensembles, cascades, rules, the stream, the lookup API's live path, the embedded scorer "
    "and the notebook API score through the Arrow core, which cannot run it: score it in a "
    "single-model job of its own, or log the model with a flavor the core scores (sklearn, "
    "lightgbm, xgboost, catboost, onnx)"
)


@dataclass(frozen=True)
class SparkPipelineFiles:
    """A Spark ML model's MLflow directory, owned by this process until the value is dropped
    (the driver's model cache holds it as long as it keeps the model)."""

    model_dir: str  # the MLflow model directory (MLmodel, the pipeline under ``pipeline``)
    pipeline: str  # the PipelineModel's directory, what ``PipelineModel.load`` reads
    model_class: str  # the flavor's ``model_class`` (a pyspark.ml PipelineModel when logged)


def refusal(label: str) -> ModelLoadError:
    """The one wording of "the core cannot score a Spark ML model"."""
    return ModelLoadError(f"{label} has MLmodel flavor '{FLAVOR}': {SPARK_ML}")


class SparkMLAdapter(Adapter):
    """Loads (keeps) the pipeline's files; refuses to describe or score it in the core."""

    name = FLAVOR

    def load(self, model_dir: Path, flavor_conf: dict[str, Any], label: str) -> Any:
        data = flavor_conf.get("model_data", "sparkml")
        if not (model_dir / data).is_dir():
            raise ModelLoadError(
                f"{label} has MLmodel flavor '{FLAVOR}' but no pipeline directory {data!r} in "
                f"{model_dir}: log it with mlflow.spark.log_model"
            )
        kept = Path(tempfile.mkdtemp(prefix="bs-sparkml-"))
        shutil.copytree(model_dir, kept, dirs_exist_ok=True)
        files = SparkPipelineFiles(
            str(kept), str(kept / data), str(flavor_conf.get("model_class", ""))
        )
        weakref.finalize(files, shutil.rmtree, str(kept), True)
        return files

    def describe(
        self, model: Any, inputs: ModelInputSpec | None, request: OutputRequest, label: str
    ) -> ModelSpec:
        self.refuse(label)

    def predict(self, spec: ModelSpec, model: Any, batch: pa.RecordBatch) -> list[pa.Array]:
        self.refuse(spec.runtime)

    def refuse(self, label: str) -> NoReturn:
        raise refusal(label)
