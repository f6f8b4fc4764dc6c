"""Reading a job file: YAML, the optional environment overlay, absolute paths, validation.

A job file (``conf/jobs/<job>.yaml``) may be overlaid by ``conf/<env>/jobs/<job>.yaml``
(deep merge, the overlay wins). Relative paths and SQLite URIs are resolved against the
project root (the directory holding ``conf/``, see ``paths.project_root``) before
validation, so every rule sees the locations the job will really use.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import yaml

from batch_serving.config.job import JobConfig
from batch_serving.config.paths import absolutize_path, absolutize_uri, project_root
from batch_serving.config.validate import validated
from batch_serving.errors import ConfigError

# (section, key) of every local path in a job file; model URIs are handled separately.
_PATH_KEYS = (
    ("input", "path"),
    ("output", "root"),
    ("publish", "root"),
    ("catalog", "metastore_dir"),
    ("stream", "path"),
    ("stream", "checkpoint"),
    ("stream", "output_root"),
)
_RUN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def load_config(path: str | Path, env: str | None = None) -> JobConfig:
    """Read a job YAML, overlay ``conf/<env>/...`` if ``env`` is given, absolutize, validate."""
    base_path = Path(path)
    data = _read_yaml(base_path)
    if env:
        overlay_path = overlay_path_for(base_path, env)
        if not overlay_path.is_file():
            raise ConfigError(f"environment overlay {overlay_path} not found for --env {env!r}")
        data = _deep_merge(data, _read_yaml(overlay_path))
    absolute = _absolutize(data, project_root(base_path))
    return validated(JobConfig.model_validate, f"config {base_path}", absolute, JobConfig)


def overlay_path_for(path: Path, env: str) -> Path:
    """``conf/jobs/churn.yaml`` + ``prod`` -> ``conf/prod/jobs/churn.yaml``."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if parent.name == "conf":
            return parent / env / resolved.relative_to(parent)
    return resolved.parent / env / resolved.name


def parse_run_date(value: str, flag: str = "--run-date") -> dt.date:
    """Parse ``YYYY-MM-DD``; anything else is a config error naming the value, and a date of
    that shape that does not exist (2026-11-31) says so rather than repeat the format. Only
    this shape: Python 3.11's ``fromisoformat`` also takes ``20261130`` and ``2026-W48-1``."""
    if not _RUN_DATE.fullmatch(value):
        raise ConfigError(f"{flag} must be YYYY-MM-DD, got {value!r}")
    try:
        return dt.date(int(value[:4]), int(value[5:7]), int(value[8:]))
    except ValueError as exc:
        raise ConfigError(f"{flag} {value} is not a valid date: {exc}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return data


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _absolutize(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy (dates as strings, as YAML wrote them) with every local path made absolute."""
    out = json.loads(json.dumps(data, default=str))
    for section, key in _PATH_KEYS:
        if isinstance(out.get(section), dict) and isinstance(out[section].get(key), str):
            out[section][key] = absolutize_path(out[section][key], base)
    model = out.get("model")
    if isinstance(model, dict):
        for key in ("tracking_uri", "registry_uri"):
            if isinstance(model.get(key), str):
                model[key] = absolutize_uri(model[key], base)
    return out
