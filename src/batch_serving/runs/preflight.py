"""Pre- and post-flight checks that orchestrators run as their own tasks.

``check_input`` fails fast, before a Spark job is even submitted, on what would fail the run
anyway: a missing or unreadable partition, an unreachable registry or unknown alias, columns
the model needs that the input lacks or cannot convert, an empty partition. (Value-level
gates, the Great Expectations suites, run inside the score job on the data it scores.) It
starts no Spark session, except to describe a Spark ML model (its stages are JVM objects:
see ``_spark_described``) or to resolve an ``input.table`` (the CLI's ``check-input``).
``check_output`` repairs an interrupted commit of the date, then confirms that the date's
predictions partition is committed, reconciled and passed its gates: what ``publish`` requires.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from batch_serving.config import JobConfig
from batch_serving.config.members import MemberModel
from batch_serving.errors import BatchServingError
from batch_serving.models.adapters import (
    SPARK_RUNTIME,
    LoadedModel,
    ModelSpec,
    OutputRequest,
    describe,
)
from batch_serving.models.artifacts import download_model, load_model_dir
from batch_serving.models.loading import load_pinned, output_request
from batch_serving.models.registry import ModelRef, resolve_model
from batch_serving.quality.checks import check_not_empty
from batch_serving.runs.recovery import holding_date, recover_date
from batch_serving.scoring.members import namespace_types
from batch_serving.scoring.plan import Member, plan_for_job
from batch_serving.scoring.rules import check_rule_references
from batch_serving.storage.files import ParquetInput, inspect_input
from batch_serving.tables.inputs import (
    missing_partition,
    partition_exists,
    partition_location,
    partition_path,
)
from batch_serving.tables.layout import predictions_layout
from batch_serving.tables.verify import verify_committed

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class CheckedModel:
    key: str
    uri: str
    kind: str
    features: tuple[str, ...]

    def line(self) -> str:
        n = len(self.features)
        return f"  model    : {self.key} {self.uri} ({self.kind}, {n} features, all present)"


@dataclass(frozen=True)
class InputCheck:
    """What ``check-input`` found: the partition, its size, every model it would score."""

    partition: str
    rows: int
    files: int
    models: tuple[CheckedModel, ...]

    def lines(self) -> list[str]:
        return [
            f"input ok: {self.partition}",
            f"  rows     : {self.rows} in {self.files} files",
            *(m.line() for m in self.models),
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OutputCheck:
    """What ``check-output`` confirmed about the committed partition."""

    partition: str
    repaired: tuple[str, ...]  # tables whose interrupted commit of the date was put back first
    rows: int
    input_rows: int
    quarantined_rows: int
    gates_passed: tuple[str, ...]
    run_id: str
    model_version: int

    def lines(self) -> list[str]:
        gates = ", ".join(f"{g} passed" for g in self.gates_passed) or "no gates"
        return [
            f"output ok: {self.partition}"
            + (" (interrupted commit repaired)" if self.repaired else ""),
            f"  rows     : {self.rows} (input {self.input_rows}, "
            f"quarantined {self.quarantined_rows}); {gates}",
            f"  run      : {self.run_id}, model v{self.model_version}",
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_input(cfg: JobConfig, run_date: dt.date) -> InputCheck:
    if not partition_exists(cfg.input, run_date, cfg.storage):
        raise missing_partition(cfg.input, run_date, cfg.storage)
    where = partition_path(cfg.input, run_date)
    members = []
    with tempfile.TemporaryDirectory(prefix="bs-check-") as tmp:
        for model in cfg.member_models():
            ref = resolve_model(model.model)
            request = output_request(cfg, model.model, champion=model.role == "champion")
            trusted = model.model.skops_trusted_types
            loaded = load_model_dir(download_model(ref, tmp), ref.uri, trusted)
            spec = _described(cfg, loaded, request, ref.uri)
            members.append(Member(model.key, ref, spec, model.role, model.inputs))
    found = inspect_input(partition_location(cfg.input, run_date, cfg.storage))
    plan_for_job(  # columns, types, member references and rule names, as the run will check them
        cfg, members, found.schema, "check-input", dt.datetime.now(dt.UTC), where
    )
    check_not_empty(found.rows, cfg.validation.allow_empty, where)
    return InputCheck(
        partition=str(where),
        rows=found.rows,
        files=len(found.files),
        models=tuple(
            CheckedModel(m.key, m.ref.uri, m.spec.kind, tuple(m.spec.features)) for m in members
        ),
    )


def _described(
    cfg: JobConfig, loaded: LoadedModel, request: OutputRequest, label: str
) -> ModelSpec:
    """The model's spec as the run describes it: by its runtime adapter (which refuses a Spark
    ML member of a multi-model job, as the run does), or for a single-model job's Spark ML
    pipeline by the run's engine (``choose_engine``: an engine that cannot score it is a
    ConfigError here too), in a Spark session."""
    if cfg.multi_model or loaded.runtime != SPARK_RUNTIME:
        return describe(loaded, request, label)
    return _spark_described(cfg, loaded, request, label)


def _spark_described(
    cfg: JobConfig, loaded: LoadedModel, request: OutputRequest, label: str
) -> ModelSpec:
    """A Spark ML pipeline described by the ``spark_ml`` engine itself (``engine.describe``:
    kind and class labels from the loaded stages, features = the columns the scoring stages
    read), so check-input and the run check the same columns. Its stages are JVM objects and
    their class counts are only in each stage's own data files, so this needs a session: a
    local one of check-input's own (``_session``), or the caller's."""
    from batch_serving.spark.engines import choose_engine, engine_named

    engine = engine_named(choose_engine(cfg, SPARK_RUNTIME))
    with _session(cfg) as spark:
        return engine.describe(spark, loaded, request, label)


@contextmanager
def _session(cfg: JobConfig) -> Iterator[SparkSession]:
    """The caller's active Spark session (left running), else a local one of check-input's
    own, started and stopped here: one core is enough to read a pipeline, and a cluster
    master would start an application for it. The job's ``spark.conf`` applies (jars of
    custom stages)."""
    from pyspark.sql import SparkSession

    from batch_serving.config import SparkConfig
    from batch_serving.spark.session import build_session

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    local = SparkConfig(master="local[1]", conf=cfg.spark.conf)
    spark = build_session(local, f"batch-serving-check-{cfg.job}")
    try:
        yield spark
    finally:
        spark.stop()


def check_rules(
    cfg: JobConfig, run_date: dt.date, resolved: list[tuple[MemberModel, ModelRef]]
) -> None:
    """A job's rules against what its pinned models output, before any Spark session starts:
    a rule on a column no member outputs, or compared with a literal of another kind, is a
    ConfigError (exit 2) naming the rule and its position. The members are loaded on the
    driver (once per process: the run reuses them) and the plan is built from the input's
    Parquet footers, so a missing column fails here too, as the run would. A partition the
    driver cannot read is left to the run's read step, which names the problem."""
    if not cfg.rules:
        return
    found = _footers(cfg, run_date)
    if found is None:
        return  # the run plans (and checks the rules) after its read step
    members = describe_members(cfg, resolved)
    where = partition_path(cfg.input, run_date)
    plan = plan_for_job(cfg, members, found.schema, "prepare", dt.datetime.now(dt.UTC), where)
    if plan.rules is not None:
        check_rule_references(plan.rules, namespace_types(plan), found.schema.names)


def _footers(cfg: JobConfig, run_date: dt.date) -> ParquetInput | None:
    """The input partition's footers, or None if it is absent or unreadable from here (an
    ``input.table`` before its run resolves it is a ConfigError here: the run checks later)."""
    try:
        if not partition_exists(cfg.input, run_date, cfg.storage):
            return None
        return inspect_input(partition_location(cfg.input, run_date, cfg.storage))
    except (BatchServingError, OSError):
        return None


def describe_members(
    cfg: JobConfig, resolved: list[tuple[MemberModel, ModelRef]]
) -> tuple[Member, ...]:
    """The plan's members without Spark: each pinned model loaded on the driver (once per
    process: the run's ``prepare_models`` finds it loaded) and described."""
    members = []
    for config, ref in resolved:
        request = output_request(cfg, config.model, champion=config.role == "champion")
        spec, _, _ = load_pinned(config.model, request, ref)
        members.append(Member(config.key, ref, spec, config.role, config.inputs))
    return tuple(members)


def check_output(cfg: JobConfig, run_date: dt.date, wait: bool = False) -> OutputCheck:
    layout = predictions_layout(cfg.output.root, cfg.model.name, cfg.storage)
    with holding_date(cfg, run_date, "check-output", wait):
        restored = recover_date(cfg, run_date)
        path = layout.committed_dir(run_date)
        manifest = verify_committed(path)
    return OutputCheck(
        partition=str(path),
        repaired=tuple(restored),
        rows=manifest.output.rows,
        input_rows=manifest.input.rows,
        quarantined_rows=manifest.quarantine.rows,
        gates_passed=tuple(manifest.validation),
        run_id=manifest.run_id,
        model_version=manifest.model.version,
    )
