"""Job configuration: YAML in ``conf/`` validated once into typed, frozen objects.

A job file (``conf/jobs/<job>.yaml``) may be overlaid by ``conf/<env>/jobs/<job>.yaml``
(deep merge, the overlay wins). Relative paths and SQLite URIs are resolved against the
working directory at load time, so Spark workers never depend on their own cwd.
This is the only module that reads ``os.environ``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from batch_serving.errors import ConfigError

LoadingStrategy = Literal["auto", "broadcast", "per_partition"]
Engine = Literal["auto", "dataframe", "arrow_direct"]
MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(_Frozen):
    """Which registered model to score with, and how to read its outputs."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    alias: str | None = None
    version: int | None = Field(default=None, ge=1)
    tracking_uri: str
    registry_uri: str | None = None
    positive_label: str | int | bool | None = None
    skops_trusted_types: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _alias_xor_version(self) -> ModelConfig:
        if (self.alias is None) == (self.version is None):
            raise ValueError("set exactly one of model.alias or model.version")
        return self

    @property
    def effective_registry_uri(self) -> str:
        return self.registry_uri or self.tracking_uri

    @property
    def selector(self) -> str:
        """Human-readable registry reference, e.g. ``models:/churn@champion``."""
        return (
            f"models:/{self.name}@{self.alias}"
            if self.alias is not None
            else f"models:/{self.name}/{self.version}"
        )


class InputConfig(_Frozen):
    """Where the warehouse table lives and how it is partitioned by date."""

    path: str
    partition_column: str = "ds"


class OutputConfig(_Frozen):
    """Root under which ``predictions/<model>/`` (and staging) are created."""

    root: str
    score_column: str = "score"


class LoadingConfig(_Frozen):
    """How the model reaches the executors."""

    strategy: LoadingStrategy = "auto"
    broadcast_max_mb: float = Field(default=256.0, gt=0)


class ExpectationConfig(_Frozen):
    """One data-quality expectation, run with Great Expectations (see ``gates.py``)."""

    type: Literal["not_null", "null_fraction", "between", "in_set", "unique", "row_count_change"]
    column: str | None = None
    min: float | None = None
    max: float | None = None
    values: tuple[str | int | float | bool, ...] | None = None
    max_fraction: float | None = Field(default=None, ge=0, le=1)
    max_change_pct: float | None = Field(default=None, ge=0)
    blocking: bool = True

    @model_validator(mode="after")
    def _arguments(self) -> ExpectationConfig:
        needs_column = self.type not in ("row_count_change",)
        if needs_column and not self.column:
            raise ValueError(f"expectation {self.type} needs `column`")
        if self.type == "between" and self.min is None and self.max is None:
            raise ValueError("expectation between needs `min` and/or `max`")
        if self.type == "in_set" and not self.values:
            raise ValueError("expectation in_set needs `values`")
        if self.type == "null_fraction" and self.max_fraction is None:
            raise ValueError("expectation null_fraction needs `max_fraction`")
        if self.type == "row_count_change" and self.max_change_pct is None:
            raise ValueError("expectation row_count_change needs `max_change_pct`")
        return self


class ValidationConfig(_Frozen):
    """What bad input is tolerated; everything else fails the run before anything is committed."""

    max_bad_rows: int | str = 0
    allow_empty: bool = False
    duplicate_ids: Literal["fail", "keep_last", "allow"] = "fail"
    input_expectations: tuple[ExpectationConfig, ...] = ()
    output_expectations: tuple[ExpectationConfig, ...] = ()

    @field_validator("max_bad_rows")
    @classmethod
    def _count_or_percent(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError("must be >= 0")
            return value
        text = value.strip()
        try:
            percent = float(text.removesuffix("%"))
        except ValueError:
            percent = -1.0
        if not text.endswith("%") or not 0 <= percent <= 100:
            raise ValueError("must be a row count (e.g. 10) or a percentage (e.g. '0.5%')")
        return text

    def allowed_bad_rows(self, input_rows: int) -> int:
        """The threshold in rows for this run's input size."""
        if isinstance(self.max_bad_rows, int):
            return self.max_bad_rows
        return int(float(self.max_bad_rows.removesuffix("%")) / 100.0 * input_rows)


class PublishConfig(_Frozen):
    """Where ``publish`` puts serving snapshots, how many it keeps, which stores it fills."""

    root: str | None = None  # default: <output.root>/serving
    keep: int = Field(default=5, ge=1)
    backends: tuple[Literal["embedded", "redis"], ...] = Field(default=("embedded",), min_length=1)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_expire_s: int = Field(default=3600, ge=1)


class CatalogConfig(_Frozen):
    """Spark catalog registration: ``<database>.<model>`` tables over the committed Parquet.

    ``metastore_uri`` (thrift://...) selects a remote Hive metastore; without it an embedded
    Derby metastore lives in ``metastore_dir`` (one process at a time, by Derby's design).
    """

    enabled: bool = True
    predictions_database: str = Field(default="predictions", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    quarantine_database: str = Field(default="quarantine", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    metastore_uri: str | None = None
    metastore_dir: str | None = None  # default: <output.root>/_metastore


class TrackingConfig(_Frozen):
    """Each run is logged as an MLflow run, next to the model's own runs."""

    log_runs: bool = True
    experiment: str = "batch-serving/{job}"


class ScheduleConfig(_Frozen):
    """How the generated Airflow DAG (``airflow_dags/``) runs this job every night."""

    cron: str = "0 3 * * *"
    start_date: dt.date = dt.date(2026, 11, 1)
    catchup: bool = True  # backfills missed dates, oldest first
    max_active_runs: int = Field(default=1, ge=1)
    retries: int = Field(default=2, ge=0)
    retry_delay_minutes: float = Field(default=5, gt=0)
    max_retry_delay_minutes: float = Field(default=60, gt=0)
    sensor_poke_seconds: int = Field(default=300, ge=1)
    sensor_timeout_hours: float = Field(default=12, gt=0)
    publish: bool = True
    owner: str = "data-platform"
    tags: tuple[str, ...] = ()


class SparkConfig(_Frozen):
    """Session settings; ``master`` is ignored when the job runs under spark-submit."""

    master: str = "local[2]"
    app_name: str | None = None
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()
            }
        return value


class JobConfig(_Frozen):
    """One scoring job: model -> input partition -> predictions partition."""

    job: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    model: ModelConfig
    input: InputConfig
    entity_columns: tuple[str, ...] = Field(min_length=1)
    features: Literal["from_signature"] | tuple[str, ...] = "from_signature"
    output: OutputConfig
    loading: LoadingConfig = LoadingConfig()
    engine: Engine = "auto"
    validation: ValidationConfig = ValidationConfig()
    publish: PublishConfig = PublishConfig()
    catalog: CatalogConfig = CatalogConfig()
    tracking: TrackingConfig = TrackingConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    spark: SparkConfig = SparkConfig()

    @property
    def metastore_dir(self) -> Path:
        return Path(self.catalog.metastore_dir or str(Path(self.output.root) / "_metastore"))

    @property
    def serving_root(self) -> Path:
        """Directory of serving snapshots (``<root>/<model>/snapshots/...`` + ``CURRENT.json``)."""
        return Path(self.publish.root or str(Path(self.output.root) / "serving"))

    def digest(self) -> str:
        """Stable hash of the effective config, recorded in every manifest."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def with_overrides(
        self,
        *,
        model_alias: str | None = None,
        model_version: int | None = None,
        tracking_uri: str | None = None,
    ) -> JobConfig:
        """Apply CLI overrides; an alias or a version replaces whichever the file had."""
        model_update: dict[str, Any] = {}
        if model_alias is not None and model_version is not None:
            raise ConfigError("give --model-alias or --model-version, not both")
        if model_alias is not None:
            model_update.update(alias=model_alias, version=None)
        if model_version is not None:
            model_update.update(alias=None, version=model_version)
        if tracking_uri is not None:
            model_update.update(tracking_uri=_absolutize_uri(tracking_uri))
        if not model_update:
            return self
        data = self.model_dump()
        data["model"].update(model_update)
        return _validate(data, source="command-line overrides")

    def with_publish(
        self, *, backends: list[str] | None = None, redis_url: str | None = None
    ) -> JobConfig:
        """Apply ``publish`` CLI overrides (backends, Redis URL)."""
        update: dict[str, Any] = {}
        if backends:
            update["backends"] = tuple(dict.fromkeys(backends))
        if redis_url:
            update["redis_url"] = redis_url
        if not update:
            return self
        data = self.model_dump()
        data["publish"].update(update)
        return _validate(data, source="command-line overrides")


def parse_run_date(value: str) -> dt.date:
    """Parse ``YYYY-MM-DD``; anything else is a config error naming the value."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--run-date must be YYYY-MM-DD, got {value!r}") from None


def load_config(path: str | Path, env: str | None = None) -> JobConfig:
    """Read a job YAML, overlay ``conf/<env>/...`` if ``env`` is given, validate, absolutize."""
    base_path = Path(path)
    data = _read_yaml(base_path)
    if env:
        overlay_path = overlay_path_for(base_path, env)
        if not overlay_path.is_file():
            raise ConfigError(f"environment overlay {overlay_path} not found for --env {env!r}")
        data = _deep_merge(data, _read_yaml(overlay_path))
    return _validate(_absolutize(data, project_root(base_path)), source=str(base_path))


def overlay_path_for(path: Path, env: str) -> Path:
    """``conf/jobs/churn.yaml`` + ``prod`` -> ``conf/prod/jobs/churn.yaml``."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if parent.name == "conf":
            return parent / env / resolved.relative_to(parent)
    return resolved.parent / env / resolved.name


def running_under_spark_submit() -> bool:
    """spark-submit launches Python with a gateway port; its --master must then win."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def prepare_process_env(worker_python: str | None) -> None:
    """Process-wide settings that libraries only take from the environment.

    Python workers use ``$PYSPARK_PYTHON`` (not a Spark conf), so local runs default it to our
    interpreter; MLflow's per-file download progress bars would flood nightly job logs.
    """
    if worker_python is not None:
        os.environ.setdefault("PYSPARK_PYTHON", worker_python)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


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


def _validate(data: dict[str, Any], source: str) -> JobConfig:
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid config {source}: {problems}") from None


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _absolutize(data: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    out = json.loads(json.dumps(data, default=str))
    sections = (
        ("input", "path"),
        ("output", "root"),
        ("publish", "root"),
        ("catalog", "metastore_dir"),
    )
    for section, key in sections:
        if isinstance(out.get(section), dict) and isinstance(out[section].get(key), str):
            out[section][key] = _absolutize_path(out[section][key], base)
    model = out.get("model")
    if isinstance(model, dict):
        for key in ("tracking_uri", "registry_uri"):
            if isinstance(model.get(key), str):
                model[key] = _absolutize_uri(model[key], base)
    return out


def project_root(config_path: Path) -> Path:
    """Relative paths in a job file resolve against the directory that holds ``conf/``
    (the project root), so Airflow tasks and spark-submit agree whatever their cwd;
    a file outside any ``conf/`` directory resolves against the working directory."""
    for parent in config_path.resolve().parents:
        if parent.name == "conf":
            return parent.parent
    return Path.cwd()


def _absolutize_path(value: str, base: Path | None = None) -> str:
    if "://" in value:
        return value
    path = Path(value).expanduser()
    return str((base / path if base is not None else path).resolve())


def _absolutize_uri(uri: str, base: Path | None = None) -> str:
    """``sqlite:///rel/x.db`` -> ``sqlite:////abs/rel/x.db``; plain paths -> absolute paths."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + _absolutize_path(uri[len(prefix) :], base)
    if "://" not in uri and ":" not in uri[:3]:
        return _absolutize_path(uri, base)
    return uri


class ServeSettings(BaseSettings):
    """Lookup API settings: ``BATCH_SERVING_*`` environment variables, overridden by CLI flags."""

    model_config = SettingsConfigDict(env_prefix="BATCH_SERVING_", frozen=True, extra="forbid")

    snapshot_root: Path = Path("data/output/serving")
    backend: Literal["embedded", "redis"] = "embedded"
    redis_url: str = "redis://127.0.0.1:6379/0"
    models: tuple[str, ...] = ()  # empty: every model published under snapshot_root / in Redis
    auth_tokens: tuple[SecretStr, ...] = ()
    auth_tokens_file: Path | None = None  # one token per line (e.g. a mounted secret)
    max_batch: int = Field(default=1000, ge=1, le=100_000)
    poll_interval_s: float = Field(default=1.0, gt=0)
    verify_checksum: bool = True

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not MODEL_NAME.fullmatch(name):
                raise ValueError(f"invalid model name {name!r}")
        return value

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
    try:
        return ServeSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid serve settings: {problems}") from None
