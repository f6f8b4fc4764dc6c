"""The one parser of registry model URIs: ``models:/<name>@<alias>`` and ``models:/<name>/<N>``.

Every entry point that takes a model URI (``export-onnx``, the notebook API, live scoring)
parses it here, so they accept and refuse the same strings. The name and alias characters are
MLflow's: a registered model name of letters, digits, ``_``, ``.`` and ``-``; an alias of
letters, digits, ``_`` and ``-`` (MLflow refuses dots in aliases); versions start at 1.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from batch_serving.config import ModelConfig
from batch_serving.errors import ConfigError

MODEL_URI = re.compile(
    r"^models:/(?P<name>[A-Za-z0-9_.\-]+)(?:@(?P<alias>[A-Za-z0-9_\-]+)|/(?P<version>[1-9]\d*))$"
)
EXPECTED = "expected models:/<name>@<alias> or models:/<name>/<version>"


class ModelUri(NamedTuple):
    """A parsed registry URI: exactly one of ``alias`` and ``version`` is set."""

    name: str
    alias: str | None
    version: int | None


def parse_model_uri(uri: str) -> ModelUri:
    """``(name, alias, version)`` of a registry URI, or ConfigError naming the URI and why.

    >>> parse_model_uri("models:/churn@champion")
    ModelUri(name='churn', alias='champion', version=None)
    >>> parse_model_uri("models:/churn/3")
    ModelUri(name='churn', alias=None, version=3)
    """
    text = uri.strip()
    match = MODEL_URI.fullmatch(text)
    if match is None:
        raise ConfigError(f"model {uri!r}: {EXPECTED}{_why(text)}")
    version = match["version"]
    return ModelUri(match["name"], match["alias"], int(version) if version else None)


def _why(text: str) -> str:
    """What is wrong with a URI the pattern refused, for the error message."""
    if not text.startswith("models:/"):
        return " (a registry URI starts with models:/)"
    rest = text[len("models:/") :]
    if "@" not in rest and "/" not in rest:
        return " (no @alias or /version after the name)"
    if "@" in rest:
        alias = rest.split("@", 1)[1]
        return f" (alias {alias!r}: letters, digits, '_' and '-' only)"
    version = rest.rsplit("/", 1)[1]
    return f" (version {version!r}: a whole number from 1)"


def model_config(
    uri: str,
    tracking_uri: str,
    *,
    registry_uri: str | None = None,
    positive_label: str | int | bool | None = None,
    skops_trusted_types: tuple[str, ...] = (),
) -> ModelConfig:
    """The ModelConfig of a registry URI, or ConfigError naming the URI."""
    parsed = parse_model_uri(uri)
    return ModelConfig(
        name=parsed.name,
        alias=parsed.alias,
        version=parsed.version,
        tracking_uri=tracking_uri,
        registry_uri=registry_uri,
        positive_label=positive_label,
        skops_trusted_types=skops_trusted_types,
    )
