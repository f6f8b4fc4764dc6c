"""Lookup API settings: ``BATCH_SERVING_*`` environment variables, overridden by CLI flags.

pydantic-settings reads the environment when ``ServeSettings`` is built; build it through
``load_serve_settings`` so a bad value is a ConfigError (exit 2) naming the setting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from batch_serving.config.sections import S3Config, StorageConfig
from batch_serving.config.validate import validated
from batch_serving.errors import ConfigError

# A served model's name is also a directory and a Redis key part: no separators, no "..".
MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


class ServeSettings(BaseSettings):
    """Lookup API settings: ``BATCH_SERVING_*`` environment variables, overridden by CLI flags."""

    model_config = SettingsConfigDict(
        env_prefix="BATCH_SERVING_", frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    snapshot_root: Path = Path("data/output/serving")
    """Directory of published snapshots (`publish.root` of the jobs)."""
    backend: Literal["embedded", "redis"] = "embedded"
    """Where lookups are answered from: memory-mapped snapshot files or Redis."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL for the `redis` backend."""
    models: tuple[str, ...] = ()
    """Models to serve (JSON list); empty: every model published under the root / in Redis."""
    auth_tokens: tuple[SecretStr, ...] = ()
    """Bearer tokens (JSON list); with any token set, `/v1/*` and `/metrics` require one."""
    auth_tokens_file: Path | None = None
    """File of bearer tokens, one per line (e.g. a mounted secret)."""
    max_batch: int = Field(default=1000, ge=1, le=100_000)
    """Most ids in one `batchGet` request, and most rows in one `POST :score` or scoring
    request."""
    row_field_bytes: int = Field(default=128, ge=16, le=1_000_000)
    """Bytes a posted row may spend per field on average (name, value, punctuation): a body of
    rows (`POST :score`, scoring requests) may have `max_batch` x (fields x this + 16) + 4096
    bytes, fields being the model's features (the stream's columns for a scoring request)."""
    poll_interval_s: float = Field(default=1.0, gt=0)
    """Seconds between checks for a newly published snapshot."""
    verify_checksum: bool = True
    """Check a snapshot's sha256 before serving it."""
    live_models: dict[str, str] = {}
    """Live fallback, opt-in per model (JSON object): model -> `scored` (the version that
    scored the snapshot) or a `models:/` URI (e.g. `models:/churn_onnx@champion`). Ids missing
    from the snapshot are scored live from the published feature snapshot."""
    live_tracking_uri: str | None = None
    """MLflow registry for live models; default: the one recorded when the job published."""
    live_cache_size: int = Field(default=10_000, ge=1)
    """Live answers kept (per process), keyed by snapshot, model version and id."""
    live_cache_ttl_s: float = Field(default=300.0, gt=0)
    """Seconds a live answer is served from the cache."""
    live_window_jobs: tuple[Path, ...] = ()
    """Job files (JSON list) whose `windows:` section has a `redis_url`: a live answer for
    their model (`model.name`, with `live_models`) uses the entity's windowed features from
    that online store as of the request, over the feature snapshot's values; such answers
    carry `features_as_of` and are never cached."""
    stream_jobs: tuple[Path, ...] = ()
    """Job files (JSON list) with a `stream:` section: their models take asynchronous
    scoring requests (`POST /v1/models/{model}/scoring-requests`), landed in the stream's
    landing directory and answered from its results."""
    snapshot_uri: str | None = None
    """Remote snapshot root (`s3://bucket/serving`, the jobs' `publish.root`); overrides
    `snapshot_root`. Current snapshots are downloaded into `snapshot_cache`."""
    snapshot_cache: Path = Path("data/cache/snapshots")
    """Local directory of snapshots downloaded from `snapshot_uri`."""
    s3_endpoint_override: str | None = None
    """`host:port` of an S3-compatible server; `null`: AWS."""
    s3_scheme: Literal["https", "http"] = "https"
    """Protocol to the S3 endpoint."""
    s3_region: str = "us-east-1"
    """Bucket region."""
    s3_access_key: str | None = None
    """S3 access key id; `null`: the AWS credential chain."""
    s3_secret_key: SecretStr | None = None
    """S3 secret key; `null`: the AWS credential chain."""

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not MODEL_NAME.fullmatch(name):
                raise ValueError(f"invalid model name {name!r}")
        return value

    def storage(self) -> StorageConfig:
        """The S3 settings as the storage layer takes them."""
        s3 = S3Config(
            endpoint_override=self.s3_endpoint_override,
            scheme=self.s3_scheme,
            region=self.s3_region,
            access_key=self.s3_access_key,
            secret_key=self.s3_secret_key,
        )
        return StorageConfig(s3=s3)

    def tokens(self) -> list[str]:
        """Configured bearer tokens (inline plus file); empty means auth is off."""
        found = [t.get_secret_value() for t in self.auth_tokens]
        if self.auth_tokens_file is not None:
            try:
                lines = self.auth_tokens_file.read_text().splitlines()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read auth_tokens_file {self.auth_tokens_file}: {exc.strerror}"
                ) from None
            found += [line.strip() for line in lines if line.strip()]
        return found


def load_serve_settings(**overrides: Any) -> ServeSettings:
    """Environment + explicit overrides (``None`` values are ignored), errors as ConfigError."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return validated(lambda data: ServeSettings(**data), "serve settings", given)
