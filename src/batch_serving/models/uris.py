"""``models:/<name>@<alias>`` and ``models:/<name>/<N>`` as a ``ModelConfig``."""

from __future__ import annotations

import re

from batch_serving.config import ModelConfig
from batch_serving.errors import ConfigError

MODEL_URI = re.compile(r"^models:/([A-Za-z0-9_.\-]+)(?:@([A-Za-z0-9_\-]+)|/(\d+))$")


def model_config(
    uri: str,
    tracking_uri: str,
    *,
    registry_uri: str | None = None,
    positive_label: str | int | bool | None = None,
    skops_trusted_types: tuple[str, ...] = (),
) -> ModelConfig:
    """The ModelConfig of a registry URI, or ConfigError naming the URI."""
    match = MODEL_URI.fullmatch(uri)
    if match is None:
        raise ConfigError(f"model {uri!r}: expected models:/<name>@<alias> or models:/<name>/<N>")
    return ModelConfig(
        name=match[1],
        alias=match[2],
        version=int(match[3]) if match[3] else None,
        tracking_uri=tracking_uri,
        registry_uri=registry_uri,
        positive_label=positive_label,
        skops_trusted_types=skops_trusted_types,
    )
