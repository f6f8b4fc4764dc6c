"""Resolve a registry alias or version ONCE, on the driver, into an immutable ``ModelRef``.

Everything downstream (delivery, scoring, manifest) uses the resolved version, so a registry
alias that moves mid-run cannot mix two model versions in one partition.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from batch_serving.config import ModelConfig
from batch_serving.config.paths import sqlite_file
from batch_serving.errors import RegistryError, RegistryUnavailableError

_HEALTH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, pinned: what was scored with, recorded in the manifest."""

    name: str
    version: int
    alias: str | None
    run_id: str | None
    artifact_uri: str
    tracking_uri: str
    registry_uri: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def cache_key(self) -> str:
        """Key of the per-worker model cache: the registry URI plus the pinned version."""
        return f"{self.registry_uri}#{self.uri}"


def resolve_model(cfg: ModelConfig) -> ModelRef:
    """Pin ``cfg``'s alias or version to one model version, or fail naming URI and alias."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    check_registry_reachable(cfg.effective_registry_uri)
    client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.effective_registry_uri)
    try:
        if cfg.alias is not None:
            mv = client.get_model_version_by_alias(cfg.name, cfg.alias)
        else:
            mv = client.get_model_version(cfg.name, str(cfg.version))
        artifact_uri = client.get_model_version_download_uri(cfg.name, mv.version)
    except MlflowException as exc:
        raise _explain_lookup_failure(client, cfg, exc) from None
    return ModelRef(
        name=cfg.name,
        version=int(mv.version),
        alias=cfg.alias,
        run_id=mv.run_id or None,
        artifact_uri=artifact_uri,
        tracking_uri=cfg.tracking_uri,
        registry_uri=cfg.effective_registry_uri,
    )


def check_registry_reachable(uri: str) -> None:
    """Fail fast with a clear message instead of mlflow's minutes of retries or a new empty DB."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=_HEALTH_TIMEOUT_S) as resp:
                if resp.status == 200:
                    return
                reason = f"HTTP {resp.status}"
        except urllib.error.URLError as exc:
            reason = str(getattr(exc, "reason", exc))
        except (OSError, ValueError) as exc:
            reason = str(exc)
        raise RegistryUnavailableError(f"MLflow registry {uri} is unreachable ({reason})")
    if parsed.scheme == "sqlite":
        db_path = sqlite_file(uri) or Path(parsed.netloc + parsed.path)
        if not db_path.is_file():
            raise RegistryError(f"MLflow registry {uri}: database file {db_path} does not exist")
    elif parsed.scheme in ("", "file"):
        store = Path(parsed.path if parsed.scheme == "file" else uri)
        if not store.is_dir():
            raise RegistryError(f"MLflow registry {uri}: store directory {store} does not exist")


def _explain_lookup_failure(client: object, cfg: ModelConfig, exc: Exception) -> RegistryError:
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(cfg.name)  # type: ignore[attr-defined]
    except MlflowException:
        return RegistryError(
            f"registered model {cfg.name!r} not found in registry {cfg.effective_registry_uri}"
        )
    if cfg.alias is not None:
        aliases = sorted(registered.aliases or {})
        return RegistryError(
            f"alias {cfg.alias!r} not found for model {cfg.name!r} in registry "
            f"{cfg.effective_registry_uri}; existing aliases: {aliases}"
        )
    return RegistryError(
        f"version {cfg.version} of model {cfg.name!r} not found in registry "
        f"{cfg.effective_registry_uri}: {exc}"
    )
