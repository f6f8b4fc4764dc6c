"""The sections of a job file (``model:``, ``input:``, ``output:`` ...), one frozen model each.

Each section is validated on its own, so an error names its key (``loading.strategy``); rules
that span sections (alias xor version is local, overlapping locations are not) live in
``job.py``. Unknown keys are refused everywhere: a typo must not silently become a default.

The docstring under each field is its description: in the generated configuration reference
(``docs/gen.py``) and in the job file's JSON Schema (``batch-serving schema``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from batch_serving.config.frozen import Frozen as Frozen  # re-exported with the sections
from batch_serving.config.input import InputConfig as InputConfig

LoadingStrategy = Literal["auto", "broadcast", "per_partition"]
Engine = Literal["auto", "dataframe", "arrow_direct", "spark_ml"]
# Spark conf values are strings to Spark; YAML may write them as numbers or booleans.
SparkConfValue = Annotated[str, WithJsonSchema({"type": ["string", "number", "boolean"]})]


class ModelConfig(Frozen):
    """Which registered model to score with, and how to read its outputs."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    """Registered model name in the MLflow registry."""
    alias: str | None = None
    """Registry alias to resolve, e.g. `champion` (set exactly one of `alias` and `version`)."""
    version: int | None = Field(default=None, ge=1)
    """Registry version to score with (set exactly one of `alias` and `version`)."""
    tracking_uri: str
    """MLflow tracking URI: `sqlite:///...` (relative to the project root), `http://...` or a
    file store path."""
    registry_uri: str | None = None
    """MLflow registry URI; `null` means the tracking URI."""
    positive_label: str | int | bool | None = None
    """Binary classifiers: the class whose probability is written as the score, looked up in
    `classes_` by label. `null` means `1` or `True`."""
    skops_trusted_types: tuple[str, ...] = ()
    """Extra skops types to trust when loading the model (tree models need their node types)."""

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


class OutputConfig(Frozen):
    """Root under which ``predictions/<model>/`` (and staging) are created."""

    root: str
    """Output root: predictions go to `<root>/predictions/<model>/ds=YYYY-MM-DD/`."""
    format: Literal["parquet", "delta"] = "parquet"
    """`parquet`: Hive-style Parquet partitions; `delta`: a Delta Lake table per model, a run's
    date replaced in one transaction (time travel with `VERSION AS OF`; local roots and `s3://`)."""
    score_column: str = "score"
    """Column name of a binary classifier's score."""
    staging_max_age_hours: float = Field(default=24.0, gt=0)
    """Staging left by a run that holds no live lease is removed by the next run of the model;
    where liveness cannot be judged (storage without leases), staging older than this is."""


class LoadingConfig(Frozen):
    """How the model reaches the executors."""

    strategy: LoadingStrategy = "auto"
    """`broadcast` pickles the model once and broadcasts it; `per_partition` has each Python
    worker download it from the registry; `auto` chooses by artifact size."""
    broadcast_max_mb: float = Field(default=256.0, gt=0)
    """`auto`: broadcast when the artifact is at most this many MB."""


class ExpectationConfig(Frozen):
    """One data-quality expectation, run with Great Expectations (see ``quality/gates.py``).

    Either one of our short kinds (``type: between``) or any GX expectation by class name with
    its own arguments inline: ``{expectation: ExpectColumnValuesToBeBetween, column: x,
    min_value: 0}`` (the snake name ``expect_column_values_to_be_between`` works too).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={"additionalProperties": True},  # `expectation:` takes GX's arguments
    )

    type: (
        Literal["not_null", "null_fraction", "between", "in_set", "unique", "row_count_change"]
        | None
    ) = None
    """Kind of expectation; each kind needs the keys its name suggests (or set `expectation`)."""
    expectation: str | None = None
    """Any Great Expectations expectation class, e.g. `ExpectColumnValuesToMatchRegex` or
    `expect_column_values_to_match_regex`; its arguments (`column`, `regex`, `mostly` ...) are
    written beside it. Checked against the pinned GX's catalogue at load."""
    kwargs: dict[str, Any] = {}
    """The GX arguments of an `expectation` (collected from the keys written beside it)."""
    column: str | None = None
    """Column checked (every type except `row_count_change`)."""
    min: float | None = None
    """`between`: lowest allowed value."""
    max: float | None = None
    """`between`: highest allowed value."""
    values: tuple[str | int | float | bool, ...] | None = None
    """`in_set`: the allowed values."""
    max_fraction: float | None = Field(default=None, ge=0, le=1)
    """`null_fraction`: highest allowed share of nulls, 0 to 1."""
    max_change_pct: float | None = Field(default=None, ge=0)
    """`row_count_change`: highest allowed change in rows vs the previous committed run, in %."""
    blocking: bool = True
    """A failing blocking expectation stops the run; a non-blocking one is only logged."""

    @model_validator(mode="before")
    @classmethod
    def _gx_arguments(cls, data: Any) -> Any:
        """``expectation:`` form: every key but ``expectation``/``blocking`` is a GX argument."""
        if not isinstance(data, dict) or data.get("expectation") is None:
            return data
        own = {"expectation", "blocking", "kwargs", "type"}
        unset = {k for k, v in data.items() if k in cls.model_fields and v is None}  # a dump
        written = {k: v for k, v in data.items() if k not in own | unset}
        arguments = {**(data.get("kwargs") or {}), **written}
        return {**{k: v for k, v in data.items() if k in own}, "kwargs": arguments}

    @model_validator(mode="after")
    def _arguments(self) -> ExpectationConfig:
        if (self.type is None) == (self.expectation is None):
            raise ValueError(
                "set exactly one of `type` (a short kind) or `expectation` (a GX class)"
            )
        if self.expectation is not None:
            from batch_serving.config.expectations import check_arguments, class_name

            check_arguments(class_name(self.expectation), self.kwargs)
            return self
        if self.kwargs:
            raise ValueError("`kwargs` belongs to the `expectation:` form")
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

    @property
    def gx_class(self) -> str | None:
        """The GX class of the `expectation:` form (its class name, whichever way written)."""
        from batch_serving.config.expectations import class_name

        return class_name(self.expectation) if self.expectation is not None else None

    @property
    def label(self) -> str:
        return self.type or self.expectation or ""


class ValidationConfig(Frozen):
    """What bad input is tolerated; everything else fails the run before anything is committed."""

    max_bad_rows: int | str = 0
    """Rows that may be quarantined: a count (`10`) or a share of the input (`"0.5%"`)."""
    allow_empty: bool = False
    """`true`: an empty input partition commits an empty partition instead of failing."""
    duplicate_ids: Literal["fail", "keep_last", "allow"] = "fail"
    """Duplicate entity ids: fail the run, keep the last row in read order, or allow them."""
    input_expectations: tuple[ExpectationConfig, ...] = ()
    """Great Expectations gate on the input partition, before scoring."""
    output_expectations: tuple[ExpectationConfig, ...] = ()
    """Great Expectations gate on the staged output, before the commit."""

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

    root: str | None = None
    """Snapshot root; `null` means `<output.root>/serving`."""
    keep: int = Field(default=5, ge=1)
    """Snapshots kept for rollback."""
    backends: tuple[Literal["embedded", "redis"], ...] = Field(default=("embedded",), min_length=1)
    """Stores to publish to: the embedded Arrow snapshot and/or Redis."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL for the `redis` backend."""
    redis_expire_s: int = Field(default=3600, ge=1)
    """Grace TTL in seconds of replaced Redis versions beyond `keep`."""
    features: bool = False
    """Also publish the scored input rows' features beside the predictions, for the lookup
    API's live fallback (ids missing from the snapshot are scored live with them)."""


class CatalogConfig(Frozen):
    """Spark catalog registration: ``<database>.<model>`` tables over the committed Parquet.

    ``metastore_uri`` (thrift://...) selects a remote Hive metastore; without it an embedded
    Derby metastore lives in ``metastore_dir`` (one process at a time, by Derby's design).
    """

    enabled: bool = True
    """Register each committed partition as a SQL table partition."""
    predictions_database: str = Field(default="predictions", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Database of the `<database>.<model>` predictions tables."""
    quarantine_database: str = Field(default="quarantine", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Database of the `<database>.<model>` quarantine tables."""
    metastore_uri: str | None = None
    """`thrift://host:port` of a shared Hive metastore; `null` means embedded Derby."""
    metastore_dir: str | None = None
    """Directory of the embedded Derby metastore; `null` means `<output.root>/_metastore`."""


class TrackingConfig(Frozen):
    """Each run is logged as an MLflow run, next to the model's own runs."""

    log_runs: bool = True
    """Log one MLflow run per committed scoring run."""
    experiment: str = "batch-serving/{job}"
    """MLflow experiment of those runs; `{job}` is replaced by the job name."""


class ScheduleConfig(Frozen):
    """How the generated Airflow DAG (``airflow_dags/``) runs this job every night."""

    cron: str = "0 3 * * *"
    """Cron schedule of the DAG."""
    start_date: dt.date = dt.date(2026, 11, 1)
    """First date the DAG runs for."""
    catchup: bool = True
    """Backfill missed dates, oldest first."""
    max_active_runs: int = Field(default=1, ge=1)
    """DAG runs at the same time."""
    retries: int = Field(default=2, ge=0)
    """Retries of each task."""
    retry_delay_minutes: float = Field(default=5, gt=0)
    """First retry delay; the delay grows exponentially."""
    max_retry_delay_minutes: float = Field(default=60, gt=0)
    """Cap of the exponential retry delay."""
    sensor_poke_seconds: int = Field(default=300, ge=1)
    """How often the input sensor looks for the date's partition."""
    sensor_timeout_hours: float = Field(default=12, gt=0)
    """How long the input sensor waits for the partition before it fails."""
    publish: bool = True
    """End the DAG with a publish task."""
    owner: str = "data-platform"
    """Airflow owner of the DAG."""
    tags: tuple[str, ...] = ()
    """Extra DAG tags (besides `batch-serving`, `scoring` and `model:<name>`)."""
    input_marker: str | None = Field(default="_SUCCESS", pattern=r"^[^/\\*?\[\]]+$")
    """File whose presence marks the date's input partition complete (written last by the
    loader); the input sensor waits for it. `null`: any Parquet file (only for partitions
    written in one atomic step)."""
    execution_timeout_minutes: float | None = Field(default=180, gt=0)
    """Time limit of the nightly `score` task (a timed-out try is retried); `null`: none."""
    pool: str = Field(default="default_pool", min_length=1)
    """Airflow pool of the Spark tasks (`score`, `backfill`), e.g. a `spark` pool whose slots
    are the jobs the cluster can take at once."""
    spark_conn_id: str = Field(default="spark_default", min_length=1)
    """Airflow Spark connection of `score` (its master wins over `spark.master`)."""
    on_failure_callback: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?$"
    )
    """Dotted path (`package.module:function`) of a callable taking Airflow's context, called
    when a task fails (paging, chat); `null`: one structured log line."""


class SparkConfig(Frozen):
    """Session settings; ``master`` is ignored when the job runs under spark-submit."""

    master: str = "local[2]"
    """Spark master of a console-script run; spark-submit's `--master` wins."""
    remote: str | None = None
    """Spark Connect server (`sc://host:port`): the job runs as a Connect client of it (its
    own master, jars and static settings; only `spark.sql.*` of `conf` apply); `null`: a
    classic session."""
    app_name: str | None = None
    """Spark application name; `null` means the command's own, e.g. `batch-serving-<job>`."""
    conf: dict[str, SparkConfValue] = Field(default_factory=dict)
    """Spark settings for the session, e.g. `{spark.sql.shuffle.partitions: 4}`."""
    jit: Literal["auto", "quick", "full"] = "auto"
    """The just-in-time compiler of a driver JVM the command starts itself (not under
    spark-submit, not for `remote`): `quick` stops at its first tier
    (`-XX:TieredStopAtLevel=1`), sparing the seconds of CPU the optimizing tier costs a short
    run; `full` is the JVM's default; `auto` is `quick` for `score` and `backfill` with engine
    `arrow_direct` or `auto` (Python tasks read, score and write; the JVM schedules them) and
    `full` for every other command. A Spark ML model is scored by the JVM: for a large local
    run of one, set `full`."""

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()
            }
        return value

    @field_validator("remote")
    @classmethod
    def _connect_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("sc://"):
            raise ValueError(f"must be a Spark Connect URL sc://host:port, got {value!r}")
        return value


class S3Config(Frozen):
    """How pyarrow's S3 client reaches the store (AWS, or any S3-compatible server).

    Credentials: leave the keys `null` to use the standard AWS chain (``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``, profiles, instance roles), read by the AWS SDK itself.
    """

    endpoint_override: str | None = None
    """`host:port` of an S3-compatible server (MinIO, Ceph, a test server); `null`: AWS."""
    scheme: Literal["https", "http"] = "https"
    """Protocol to the endpoint."""
    region: str = "us-east-1"
    """Bucket region."""
    access_key: str | None = None
    """Access key id; `null`: the AWS credential chain."""
    secret_key: SecretStr | None = None
    """Secret key; `null`: the AWS credential chain."""
    allow_bucket_creation: bool = False
    """Create a missing bucket on first write (test servers); off for real buckets."""


class StorageConfig(Frozen):
    """Object-store access, and the commit protocol of ``output.root``."""

    s3: S3Config = S3Config()
    """Options of `s3://` / `s3a://` URIs."""
    azure_account: str | None = None
    """Storage account of `abfs://` URIs."""
    commit: Literal["auto", "swap", "pointer"] = "auto"
    """`auto`: two-rename swap where directory rename is atomic (local, HDFS), immutable run
    directories + a pointer object written last on object stores; `pointer` forces the latter."""
    grace_period_s: float = Field(default=3600.0, ge=0)
    """Seconds a replaced run's directory stays readable (object stores) before it is deleted."""
    lease_dir: str | None = None
    """Local (or shared POSIX) directory of the date leases when `output.root` is remote;
    `null`: lease objects on the bucket itself (`s3://`, conditional writes: drivers on any
    host are kept apart), or the system temp directory for `gs://`/`abfs://` (one driver host)."""


class DriftGatesConfig(Frozen):
    """Drift thresholds (PSI), checked by `publish` against the run's recorded drift: over a
    `*_psi_max` publish refuses (exit 8) and names the column and its value; over
    `feature_psi_warn` it logs a warning. `null` turns a threshold off."""

    score_psi_max: float | None = Field(default=0.25, ge=0)
    """The served score's PSI above which publish refuses."""
    member_psi_max: float | None = Field(default=None, ge=0)
    """Each member's score (multi-model jobs): PSI above which publish refuses."""
    feature_psi_max: float | None = Field(default=None, ge=0)
    """Any feature's PSI above which publish refuses."""
    feature_psi_warn: float | None = Field(default=0.2, ge=0)
    """Any feature's PSI above which the run and publish warn (never blocks)."""


class MonitoringConfig(Frozen):
    """Drift computed in the scoring pass, the run report, and drift gates on publish."""

    enabled: bool = False
    """Profile every feature and score while scoring; store the profile and write the report."""
    reference: Literal["auto", "model", "previous"] = "auto"
    """Reference bins: `model` (a profile of the training data logged with the champion as
    `monitoring/reference_profile.json`), `previous` (the latest committed date before this
    one), or `auto` (the model's if present, else the previous date's)."""
    bins: int = Field(default=10, ge=2, le=100)
    """Numeric bins (quantiles of the first reference) when no reference gives edges."""
    top_k: int = Field(default=20, ge=1, le=200)
    """Categories counted per categorical feature; the rest count as `<other>`."""
    sample_rows: int = Field(default=20_000, ge=100)
    """Rows read on the driver to place the first bins when there is no reference at all."""
    bin_sample: float = Field(default=0.125, gt=0, le=1)
    """Share of each scored batch's values counted into numeric bins: a seeded uniform random
    draw of at least 8,192 values (a smaller batch counts all); `1` counts every value. Rows,
    nulls, NaN, min, max, sum and categorical bins are always exact."""
    history: int = Field(default=14, ge=1)
    """Runs shown in the report's sparklines."""
    gates: DriftGatesConfig = DriftGatesConfig()
    """Drift thresholds enforced by `publish`."""
