"""Driver-side: download a pinned model version, load it, and describe it for the job."""

from __future__ import annotations

from pathlib import Path

from batch_serving.config import JobConfig
from batch_serving.models.adapters import LoadedModel, ModelSpec, OutputRequest, describe
from batch_serving.models.artifacts import download_model, load_model_dir
from batch_serving.models.registry import ModelRef


def output_request(cfg: JobConfig) -> OutputRequest:
    """What the job config asks of its model's outputs."""
    return OutputRequest(
        features=None if cfg.features == "from_signature" else tuple(cfg.features),
        positive_label=cfg.model.positive_label,
        score_column=cfg.output.score_column,
    )


def load_and_describe(
    cfg: JobConfig, ref: ModelRef, workdir: str
) -> tuple[ModelSpec, LoadedModel, Path]:
    """The model's spec, the loaded model and its local artifact directory (under workdir)."""
    model_dir = download_model(ref, workdir)
    loaded = load_model_dir(model_dir, ref.uri, cfg.model.skops_trusted_types)
    return describe(loaded, output_request(cfg), ref.uri), loaded, model_dir
