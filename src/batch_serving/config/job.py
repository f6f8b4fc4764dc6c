"""One scoring job (``conf/jobs/<job>.yaml``) as a frozen model, with its cross-section rules.

The sections are in ``sections.py``; this module adds what needs more than one section: the
locations derived from ``output.root``, the refusal of outputs that overlap the input table,
the digest recorded in manifests, and the command-line overrides.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from batch_serving.config.cascade import CascadeConfig, check_cascade
from batch_serving.config.ensemble import checked_ensemble
from batch_serving.config.members import (
    CHAMPION,
    EnsembleConfig,
    MemberConfig,
    MemberModel,
    check_members,
    member_models,
)
from batch_serving.config.paths import absolutize_uri, overlap
from batch_serving.config.rules import check_rule_names, parse_rules
from batch_serving.config.sections import (
    CatalogConfig,
    Engine,
    Frozen,
    InputConfig,
    LoadingConfig,
    ModelConfig,
    MonitoringConfig,
    OutputConfig,
    PublishConfig,
    ScheduleConfig,
    SparkConfig,
    StorageConfig,
    TrackingConfig,
    ValidationConfig,
)
from batch_serving.config.stream import StreamConfig
from batch_serving.config.validate import validated
from batch_serving.config.windows import WindowsConfig
from batch_serving.errors import ConfigError


class JobConfig(Frozen):
    """One scoring job: model -> input partition -> predictions partition."""

    job: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    """Name of the job, used in logs, the manifest and the Airflow DAG id."""
    model: ModelConfig
    """The champion: the registered model whose output is served."""
    input: InputConfig
    """The date-partitioned warehouse table that is scored."""
    entity_columns: tuple[str, ...] = Field(min_length=1)
    """Id columns carried through to the output (the lookup API's key)."""
    features: Literal["from_signature"] | tuple[str, ...] = "from_signature"
    """The model's input columns: `from_signature` or an explicit list."""
    output: OutputConfig
    """Where the predictions and quarantine tables are written."""
    loading: LoadingConfig = LoadingConfig()
    """How the model reaches the executors: broadcast, or downloaded by each worker."""
    engine: Engine = "auto"
    """Scoring engine: `arrow_direct` (pyarrow inside Spark tasks), `dataframe`
    (`mapInArrow`), `spark_ml` (a Spark ML pipeline's own `transform`) or `auto`
    (`spark_ml` for a Spark ML model, else `arrow_direct` for Parquet on a filesystem path)."""
    validation: ValidationConfig = ValidationConfig()
    """What bad input is tolerated, and the data-quality gates."""
    publish: PublishConfig = PublishConfig()
    """Serving snapshots for the lookup API."""
    catalog: CatalogConfig = CatalogConfig()
    """SQL tables over the committed partitions."""
    tracking: TrackingConfig = TrackingConfig()
    """MLflow run records of the scoring runs."""
    schedule: ScheduleConfig = ScheduleConfig()
    """The generated Airflow DAG."""
    spark: SparkConfig = SparkConfig()
    """The Spark session."""
    stream: StreamConfig | None = None
    """Streaming micro-batch scoring (`batch-serving stream`); `null`: the job is batch only."""
    storage: StorageConfig = StorageConfig()
    """Object-store access (S3 endpoint, credentials) and the output commit protocol."""
    monitoring: MonitoringConfig = MonitoringConfig()
    """Drift per run (in the scoring pass), the run report and drift gates on publish."""
    members: dict[str, MemberConfig] = Field(default_factory=dict)
    """More models scored in the same pass, by key: members, pipelines and shadows."""
    ensemble: EnsembleConfig | None = None
    """How the served score combines members' scores; `null`: the champion's output."""
    cascade: CascadeConfig | None = None
    """Stages that answer in turn, each scoring only the rows earlier stages left open (a
    cheap model answers what it is sure of); `null`: no cascade."""
    rules: tuple[dict[str, Any], ...] = Field(
        default=(),
        json_schema_extra={
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"when": {"type": "string"}, "action": {"type": "string"}},
                        "required": ["when", "action"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {"otherwise": {"type": "string"}},
                        "required": ["otherwise"],
                        "additionalProperties": False,
                    },
                ]
            }
        },
    )
    """Business rules turning scores into an `action`, first match wins:
    `{when: <condition>, action: <name>}` items, ending with `{otherwise: <name>}`."""
    windows: WindowsConfig | None = None
    """Windowed features of each entity's recent events (point-in-time correct), added to the
    stream's events before scoring and built into training sets; `null`: none."""

    @model_validator(mode="after")
    def _windows_on_stream_columns(self) -> JobConfig:
        """The windows' columns exist among the stream's declared columns, at load."""
        if self.windows is not None and self.stream is not None:
            try:
                self.windows.check_columns(self.stream.columns, self.stream.event_time_column)
            except ValueError as exc:
                raise PydanticCustomError("windows", str(exc)) from None
        return self

    @model_validator(mode="after")
    def _members_ensemble_rules(self) -> JobConfig:
        """Member references, cycles, the ensemble, the rules' syntax and names, at load."""
        try:
            check_members(self.members, self.ensemble)
        except ValueError as exc:
            raise PydanticCustomError("members", str(exc)) from None
        if self.ensemble is not None:
            e = self.ensemble
            checked_ensemble(e.members, e.method, e.weights, e.threshold)
        if self.cascade is not None:
            check_cascade(
                self.cascade,
                {CHAMPION: CHAMPION} | {k: m.role for k, m in self.members.items()},
                {k: m.inputs for k, m in self.members.items()},
                ensemble=self.ensemble is not None,
                score_column=self.output.score_column,
            )
        if self.rules:
            roles = {CHAMPION: CHAMPION} | {k: m.role for k, m in self.members.items()}
            check_rule_names(
                parse_rules(self.rules),
                roles,
                ensemble=self.ensemble is not None,
                score_column=self.output.score_column,
            )
        return self

    @model_validator(mode="after")
    def _monitoring_on_a_local_root(self) -> JobConfig:
        """Drift profiles, reports and the run index are local files today."""
        root = self.output.root
        if self.monitoring.enabled and "://" in root and not root.startswith("file://"):
            raise PydanticCustomError(
                "monitoring",
                "monitoring.enabled needs a local output.root (profiles and reports are local "
                "files); {root} is remote",
                {"root": root},
            )
        return self

    def member_models(self) -> list[MemberModel]:
        """Every model of the job in scoring order, the champion (``model:``) first."""
        return member_models(self.model, self.members, self.ensemble)

    @property
    def multi_model(self) -> bool:
        """Several models in one pass (members, an ensemble, a cascade or rules): the wider
        output."""
        return bool(self.members or self.ensemble or self.cascade or self.rules)

    @model_validator(mode="after")
    def _table_needs_metastore(self) -> JobConfig:
        """``input.table`` is looked up in the metastore of the ``catalog:`` section, which a
        session has only with the catalog on (else Spark's in-memory catalog knows no table)."""
        if self.input.table is not None and not self.catalog.enabled:
            raise PydanticCustomError(
                "table_needs_catalog",
                f"input.table {self.input.table} is looked up in the Hive metastore: set "
                "catalog.enabled (and catalog.metastore_uri for a shared metastore)",
            )
        return self

    @model_validator(mode="after")
    def _writes_outside_input(self) -> JobConfig:
        """The job writes predictions/, quarantine/, _metastore/ and snapshots; inside the
        input table (or around it) a Hive-style read of that table would return them as rows.
        The derived defaults sit under ``output.root``, so only explicit locations are checked."""
        written = {
            "output.root": self.output.root,
            "publish.root": self.publish.root,
            "catalog.metastore_dir": self.catalog.metastore_dir,
        }
        for key, location in written.items():
            path = self.input.path  # a table's location is known once resolved (not here)
            relation = None if location is None or path is None else overlap(location, path)
            if relation is not None:
                raise PydanticCustomError(
                    "overlapping_locations",
                    f"{key} {location} {relation} input.path {self.input.path}: the job "
                    "must not write into (or around) the table it reads",
                )
        return self

    @property
    def metastore_dir(self) -> Path:
        """Embedded Derby's directory; its default, ``<output.root>/_metastore``, must be local:
        a remote root (``s3://``) with the catalog on needs a metastore URI or directory."""
        catalog, root = self.catalog, self.output.root
        remote = "://" in root and not root.startswith("file://")
        if remote and catalog.enabled and not (catalog.metastore_uri or catalog.metastore_dir):
            raise ConfigError(
                f"output.root {root} is remote: with catalog.enabled set catalog.metastore_uri "
                "(a shared Hive metastore) or catalog.metastore_dir (a local Derby directory)"
            )
        return Path(catalog.metastore_dir or str(Path(root) / "_metastore"))

    @property
    def serving_root(self) -> Path:
        """Directory of serving snapshots (``<root>/<model>/snapshots/...`` + ``CURRENT.json``)."""
        return Path(self.publish.root or str(Path(self.output.root) / "serving"))

    @property
    def serving_uri(self) -> str:
        """``serving_root`` as a URI: the same place, spelled so ``s3://`` roots survive."""
        return self.publish.root or self.output.root.rstrip("/") + "/serving"

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
            model_update.update(tracking_uri=absolutize_uri(tracking_uri))
        return self._updated("model", model_update)

    def with_publish(
        self, *, backends: list[str] | None = None, redis_url: str | None = None
    ) -> JobConfig:
        """Apply ``publish`` CLI overrides (backends, Redis URL)."""
        update: dict[str, Any] = {}
        if backends:
            update["backends"] = tuple(dict.fromkeys(backends))
        if redis_url:
            update["redis_url"] = redis_url
        return self._updated("publish", update)

    def _updated(self, section: str, update: dict[str, Any]) -> JobConfig:
        """A copy with ``update`` applied to one section, validated again as a whole."""
        if not update:
            return self
        data = self.model_dump()
        data[section].update(update)
        return validated(JobConfig.model_validate, "config command-line overrides", data)
