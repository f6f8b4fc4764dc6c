"""Driver-side: download a pinned model version, load it, and describe it for the job."""

from __future__ import annotations

import tempfile
from pathlib import Path

from batch_serving.config import JobConfig, ModelConfig
from batch_serving.models.adapters import LoadedModel, ModelSpec, OutputRequest, describe
from batch_serving.models.artifacts import directory_size_mb, download_model, load_model_dir
from batch_serving.models.cache import MAX_MODELS, LruCache
from batch_serving.models.registry import ModelRef

_LOADED: LruCache[str, tuple[LoadedModel, float]] = LruCache(MAX_MODELS)  # the driver's


def output_request(cfg: JobConfig, model: ModelConfig, champion: bool = True) -> OutputRequest:
    """What the job asks of a model's outputs; a configured feature list is the champion's."""
    configured = champion and cfg.features != "from_signature"
    return OutputRequest(
        features=tuple(cfg.features) if configured else None,
        positive_label=model.positive_label,
        score_column=cfg.output.score_column,
    )


def load_and_describe(
    model: ModelConfig, request: OutputRequest, ref: ModelRef, workdir: str
) -> tuple[ModelSpec, LoadedModel, Path]:
    """The model's spec, the loaded model and its local artifact directory (under workdir)."""
    model_dir = download_model(ref, workdir)
    loaded = load_model_dir(model_dir, ref.uri, model.skops_trusted_types)
    return describe(loaded, request, ref.uri), loaded, model_dir


def load_pinned(
    model: ModelConfig, request: OutputRequest, ref: ModelRef
) -> tuple[ModelSpec, LoadedModel, float]:
    """The model's spec (described by its runtime adapter), the loaded model and its artifact
    size in MB, for scoring through the core (see ``loaded_pinned``)."""
    loaded, size_mb = loaded_pinned(model, ref)
    return describe(loaded, request, ref.uri), loaded, size_mb


def loaded_pinned(model: ModelConfig, ref: ModelRef) -> tuple[LoadedModel, float]:
    """The loaded model and its artifact size in MB, not yet described (a Spark ML pipeline
    is described by Spark: ``spark.engines.spark_ml``).

    A registered version never changes, so the driver downloads and loads it once per
    process (keyed by registry, version and artifact location) and later runs of the same
    process (backfills, notebooks, the benchmark) describe the model they already hold."""
    trusted = ",".join(model.skops_trusted_types)

    def load() -> tuple[LoadedModel, float]:
        with tempfile.TemporaryDirectory(prefix="bs-driver-") as tmp:
            model_dir = download_model(ref, tmp)
            loaded = load_model_dir(model_dir, ref.uri, model.skops_trusted_types)
            return loaded, directory_size_mb(model_dir)

    return _LOADED.get_or_load(f"{ref.cache_key}|{ref.artifact_uri}|{trusted}", load)[0]
