"""Driver-side: download a pinned model version, load it, and describe it for the job."""

from __future__ import annotations

from pathlib import Path

from batch_serving.config import JobConfig, ModelConfig
from batch_serving.models.adapters import LoadedModel, ModelSpec, OutputRequest, describe
from batch_serving.models.artifacts import download_model, load_model_dir
from batch_serving.models.registry import ModelRef


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
