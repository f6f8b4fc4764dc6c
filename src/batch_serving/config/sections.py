"""The sections of a job file (``model:``, ``input:``, ``output:`` ...), one frozen model each.

Each section is validated on its own, so an error names its key (``loading.strategy``); rules
that span sections (alias xor version is local, overlapping locations are not) live in
``job.py``. Unknown keys are refused everywhere: a typo must not silently become a default.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LoadingStrategy = Literal["auto", "broadcast", "per_partition"]
Engine = Literal["auto", "dataframe", "arrow_direct"]


class Frozen(BaseModel):
    """Immutable, and refuses keys it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(Frozen):
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


class InputConfig(Frozen):
    """Where the warehouse table lives and how it is partitioned by date."""

    path: str
    partition_column: str = "ds"


class OutputConfig(Frozen):
    """Root under which ``predictions/<model>/`` (and staging) are created."""

    root: str
    score_column: str = "score"


class LoadingConfig(Frozen):
    """How the model reaches the executors."""

    strategy: LoadingStrategy = "auto"
    broadcast_max_mb: float = Field(default=256.0, gt=0)


class ExpectationConfig(Frozen):
    """One data-quality expectation, run with Great Expectations (see ``quality/gates.py``)."""

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


class ValidationConfig(Frozen):
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


class PublishConfig(Frozen):
    """Where ``publish`` puts serving snapshots, how many it keeps, which stores it fills."""

    root: str | None = None  # default: <output.root>/serving
    keep: int = Field(default=5, ge=1)
    backends: tuple[Literal["embedded", "redis"], ...] = Field(default=("embedded",), min_length=1)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_expire_s: int = Field(default=3600, ge=1)


class CatalogConfig(Frozen):
    """Spark catalog registration: ``<database>.<model>`` tables over the committed Parquet.

    ``metastore_uri`` (thrift://...) selects a remote Hive metastore; without it an embedded
    Derby metastore lives in ``metastore_dir`` (one process at a time, by Derby's design).
    """

    enabled: bool = True
    predictions_database: str = Field(default="predictions", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    quarantine_database: str = Field(default="quarantine", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    metastore_uri: str | None = None
    metastore_dir: str | None = None  # default: <output.root>/_metastore


class TrackingConfig(Frozen):
    """Each run is logged as an MLflow run, next to the model's own runs."""

    log_runs: bool = True
    experiment: str = "batch-serving/{job}"


class ScheduleConfig(Frozen):
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


class SparkConfig(Frozen):
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
