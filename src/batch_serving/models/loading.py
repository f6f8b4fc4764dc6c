"""Driver-side: download a pinned model version, load it, and describe it for the job."""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from batch_serving.config import JobConfig, ModelConfig
from batch_serving.models.adapters import LoadedModel, ModelSpec, OutputRequest, describe
from batch_serving.models.artifacts import directory_size_mb, download_model, load_model_dir
from batch_serving.models.registry import ModelRef

MAX_LOADED = 16  # like the workers' model cache
_LOADED: OrderedDict[str, tuple[LoadedModel, float]] = OrderedDict()
_LOCK = threading.Lock()


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
    """The model's spec, the loaded model and its artifact size in MB, for scoring runs.

    A registered version never changes, so the driver downloads and loads it once per
    process (keyed by registry, version and artifact location) and later runs of the same
    process (backfills, notebooks, the benchmark) describe the model they already hold."""
    trusted = ",".join(model.skops_trusted_types)
    key = f"{ref.cache_key}|{ref.artifact_uri}|{trusted}"
    with _LOCK:
        hit = _LOADED.get(key)
        if hit is not None:
            _LOADED.move_to_end(key)
    if hit is None:
        with tempfile.TemporaryDirectory(prefix="bs-driver-") as tmp:
            model_dir = download_model(ref, tmp)
            loaded = load_model_dir(model_dir, ref.uri, model.skops_trusted_types)
            hit = (loaded, directory_size_mb(model_dir))
        with _LOCK:
            _LOADED[key] = hit
            while len(_LOADED) > MAX_LOADED:
                _LOADED.popitem(last=False)
    return describe(hit[0], request, ref.uri), hit[0], hit[1]
