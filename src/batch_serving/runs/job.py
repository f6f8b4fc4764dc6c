"""The scoring job: config -> resolve model -> read -> validate -> score -> write -> commit.

Each step is a call into its own module; this module only sequences them, times them and
makes sure that a failure at any point discards the staged output and leaves the committed
partition as it was.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from batch_serving import __version__
from batch_serving.config import ExpectationConfig, JobConfig
from batch_serving.errors import (
    BatchServingError,
    InputValidationError,
    OutputValidationError,
    ScoringError,
    StorageError,
)
from batch_serving.models.adapters import ScoringSpec, build_spec
from batch_serving.models.artifacts import download_model, load_model_dir
from batch_serving.models.registry import ModelRef, resolve_model
from batch_serving.quality.checks import (
    check_duplicates,
    check_not_empty,
    duplicate_ids_arrow,
    duplicate_ids_spark,
    keep_last,
    log_ignored_columns,
    plan_casts,
    select_for_scoring,
)
from batch_serving.quality.gates import GateResult, run_gate, write_reports
from batch_serving.spark.delivery import DeliveryPlan, plan_delivery, release
from batch_serving.spark.engines import arrow_direct as arrow_engine
from batch_serving.spark.engines.dataframe import (
    score,
    split_scored,
    with_model_columns,
    with_quarantine_columns,
)
from batch_serving.spark.reader import (
    missing_partition,
    partition_exists,
    partition_path,
    read_partition,
)
from batch_serving.tables import commit as storage

log = logging.getLogger(__name__)


@dataclass
class StepTimer:
    """Wall-clock seconds per named step, in the order the steps ran."""

    durations: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("step %s ...", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.durations[name] = round(time.perf_counter() - start, 3)
            log.info("step %s done in %.2fs", name, self.durations[name])


@dataclass(frozen=True)
class RunResult:
    manifest: dict[str, Any]
    committed: storage.Committed

    @property
    def manifest_path(self) -> Path:
        return self.committed.path / storage.MANIFEST_NAME


def new_run_id(now: dt.datetime) -> str:
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def output_layout(cfg: JobConfig) -> storage.TableLayout:
    return storage.predictions_layout(cfg.output.root, cfg.model.name)


def quarantine_layout(cfg: JobConfig) -> storage.TableLayout:
    return storage.quarantine_layout(cfg.output.root, cfg.model.name)


@dataclass(frozen=True)
class Staged:
    """Where this run stages its two outputs, and the run's identity for lineage columns."""

    predictions: Path
    quarantine: Path
    run_id: str
    started: dt.datetime


def run_score(spark: SparkSession, cfg: JobConfig, run_date: dt.date) -> RunResult:
    """Score ``run_date`` and commit its predictions partition; raise on any failure."""
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run_id = new_run_id(started)
    timer = StepTimer()
    layout = output_layout(cfg)
    q_layout = quarantine_layout(cfg)
    staged = layout.staging_dir(run_id)
    staged_q = q_layout.staging_dir(run_id)
    out = Staged(staged, staged_q, run_id, started)
    trusted = cfg.model.skops_trusted_types
    log.info("run %s: job %s, date %s, model %s", run_id, cfg.job, run_date, cfg.model.selector)

    with timer.step("resolve_model"):
        ref = resolve_model(cfg.model)
    log.info("resolved %s -> %s (model run %s)", cfg.model.selector, ref.uri, ref.run_id)
    with timer.step("load_model"), tempfile.TemporaryDirectory(prefix="bs-driver-") as tmp:
        model_dir = download_model(ref, tmp)
        loaded = load_model_dir(model_dir, ref.uri, trusted)
        features = None if cfg.features == "from_signature" else cfg.features
        spec = build_spec(
            loaded, features, cfg.model.positive_label, cfg.output.score_column, ref.uri
        )
        feature_types = dict(loaded.inputs.columns) if loaded.inputs else None
        plan = plan_delivery(spark, ref, loaded.obj, model_dir, cfg.loading, trusted)
        del loaded
    log.info(
        "model kind %s, %d features, delivery %s (%.1f MB)",
        spec.kind,
        len(spec.features),
        plan.strategy,
        plan.artifact_mb,
    )
    where = partition_path(cfg.input, run_date)
    engine = choose_engine(cfg)
    try:
        gates = _Gates(_previous_input_rows(layout, run_date), layout, run_id)
        runner = _run_arrow_direct if engine == "arrow_direct" else _run_dataframe

        def input_gate(df: DataFrame) -> None:
            gates.check(df, "input", cfg.validation.input_expectations, InputValidationError, where)

        input_rows = runner(
            EngineRun(spark, cfg, run_date, spec, feature_types, plan, ref, out, timer, input_gate)
        )
        with timer.step("reconcile"):
            output_rows = storage.count_rows(staged)
            output_files = len(storage.data_files(staged))
            bad_rows = storage.count_rows(staged_q)
            if output_rows + bad_rows != input_rows:
                raise OutputValidationError(
                    f"staged output has {output_rows} scored + {bad_rows} quarantined rows but "
                    f"input {where} has {input_rows}; nothing committed"
                )
            allowed = cfg.validation.allowed_bad_rows(input_rows)
            if bad_rows:
                log.warning("%d rows quarantined (allowed: %d)", bad_rows, allowed)
        if cfg.validation.output_expectations:
            with timer.step("validate_output"):
                gates.check(
                    spark.read.parquet(str(staged)),
                    "output",
                    cfg.validation.output_expectations,
                    OutputValidationError,
                    str(layout.partition_dir(run_date)),
                )
        if bad_rows > allowed:
            q_path = storage.commit(q_layout, run_date, staged_q, run_id).path
            raise ScoringError(
                f"{bad_rows} of {input_rows} rows could not be scored (max_bad_rows "
                f"{cfg.validation.max_bad_rows}); top errors: {_top_errors(q_path)}; "
                f"quarantined to {q_path}; predictions not committed"
            )
        manifest: dict[str, Any] = {
            "job": cfg.job,
            "run_id": run_id,
            "run_date": run_date.isoformat(),
            "started_at": started.isoformat(),
            "config_digest": cfg.digest(),
            "model": _model_section(ref),
            "scoring": {"engine": engine, **_scoring_section(spec, plan)},
            "input": {"path": where, "rows": input_rows},
            "quarantine": {
                "path": str(q_layout.partition_dir(run_date)),
                "rows": bad_rows,
                "max_bad_rows": cfg.validation.max_bad_rows,
            },
            "output": {
                "path": str(layout.partition_dir(run_date)),
                "rows": output_rows,
                "files": output_files,
            },
            "versions": {"batch_serving": __version__, "spark": spark.version},
            "validation": {
                g.name: {"success": g.success, "checked": g.checked, "warnings": g.warnings}
                for g in gates.results
            },
        }
        with timer.step("commit"):
            staged_q.mkdir(parents=True, exist_ok=True)  # a clean run may have written none
            manifest["durations_s"] = timer.durations
            storage.write_manifest(staged, manifest)
            storage.write_manifest(staged_q, manifest)
            if gates.results:
                write_reports(staged, gates.results, f"{cfg.job} {run_date} (run {run_id})")
            storage.commit(q_layout, run_date, staged_q, run_id)
            committed = storage.commit(layout, run_date, staged, run_id)
    finally:
        storage.discard(staged)
        storage.discard(staged_q)
        release(plan)
    log.info("committed %d rows to %s", committed.rows, committed.path)
    publish_run(spark, cfg, run_date, manifest, committed.path)
    return RunResult(manifest=manifest, committed=committed)


def publish_run(
    spark: SparkSession, cfg: JobConfig, run_date: dt.date, manifest: dict[str, Any], path: Path
) -> None:
    """After the commit: register the SQL tables, log the MLflow run, record both."""
    from batch_serving.spark.catalog import register_partition

    tables: list[str] = []
    if cfg.catalog.enabled:
        for database, layout in (
            (cfg.catalog.predictions_database, output_layout(cfg)),
            (cfg.catalog.quarantine_database, quarantine_layout(cfg)),
        ):
            name = register_partition(spark, database, layout, run_date)
            if name is not None:
                tables.append(name.replace("`", ""))
    manifest["tables"] = tables
    if cfg.tracking.log_runs:
        from batch_serving.runs.mlflow_record import log_run

        manifest["mlflow_run_id"] = log_run(cfg, manifest, path)
    storage.write_manifest(path, manifest)


def choose_engine(cfg: JobConfig) -> str:
    """``auto``: arrow_direct for plain Parquet on a filesystem path, else dataframe."""
    if cfg.engine != "auto":
        return cfg.engine
    if cfg.validation.duplicate_ids == "keep_last":
        return "dataframe"  # needs a window over the whole partition
    return "arrow_direct" if arrow_engine.is_local_path(cfg.input.path) else "dataframe"


def _run_dataframe(run: EngineRun) -> int:
    cfg, spec, out, timer = run.cfg, run.spec, run.out, run.timer
    where = partition_path(cfg.input, run.run_date)
    entities = cfg.entity_columns
    with timer.step("read"):
        df = _spark_action(lambda: read_partition(run.spark, cfg.input, run.run_date), where)
        input_rows = _spark_action(df.count, where)
    log.info("input %s: %d rows (engine dataframe)", where, input_rows)
    with timer.step("validate"):
        check_not_empty(input_rows, cfg.validation.allow_empty, where)
        selected = select_for_scoring(
            df, entities, spec.features, run.feature_types, spec.feed == "numpy", where
        )
        if cfg.validation.duplicate_ids != "allow":
            if arrow_engine.is_local_path(where):  # ids only, via pyarrow: no Spark shuffle
                files = arrow_engine.data_files(where)
                extra, examples = duplicate_ids_arrow(files, entities)
            else:
                extra, examples = _spark_action(lambda: duplicate_ids_spark(df, entities), where)
            check_duplicates(extra, examples, entities, cfg.validation.duplicate_ids, where)
            if extra and cfg.validation.duplicate_ids == "keep_last":
                selected = keep_last(selected, entities)
                input_rows -= extra
        run.input_gate(df)
    with timer.step("score_and_stage"):
        good, bad = split_scored(score(selected, entities, spec, run.plan.handle))
        _write_staged(with_model_columns(good, run.ref, out.started), out.predictions)
        if storage.count_rows(out.predictions) < input_rows:
            # Rare path: some rows could not be scored. Score again to collect them rather
            # than caching every run's output for a quarantine that is almost always empty.
            quarantined = with_quarantine_columns(bad, entities, run.ref, out.run_id, out.started)
            _write_staged(quarantined.coalesce(1), out.quarantine)
    return input_rows


def _run_arrow_direct(run: EngineRun) -> int:
    cfg, spec, out, timer = run.cfg, run.spec, run.out, run.timer
    where = partition_path(cfg.input, run.run_date)
    entities = cfg.entity_columns
    with timer.step("read"):
        if not partition_exists(cfg.input, run.run_date):
            raise missing_partition(cfg.input, run.run_date)
        arrow_input = arrow_engine.inspect_input(where)
    log.info(
        "input %s: %d rows in %d files (engine arrow_direct)",
        where,
        arrow_input.rows,
        len(arrow_input.files),
    )
    with timer.step("validate"):
        check_not_empty(arrow_input.rows, cfg.validation.allow_empty, where)
        schema = arrow_engine.spark_schema(arrow_input)
        casts = plan_casts(
            schema, entities, spec.features, run.feature_types, spec.feed == "numpy", where
        )
        log_ignored_columns(schema.fieldNames(), [*entities, *spec.features], where)
        if cfg.validation.duplicate_ids != "allow":
            extra, examples = duplicate_ids_arrow(arrow_input.files, entities)
            check_duplicates(extra, examples, entities, cfg.validation.duplicate_ids, where)
        if cfg.validation.input_expectations:
            run.input_gate(run.spark.read.parquet(where))
    with timer.step("score_and_stage"):
        action = functools.partial(
            arrow_engine.run,
            run.spark,
            arrow_input,
            entities,
            casts,
            spec,
            run.plan.handle,
            run.ref,
            out.started,
            out.predictions,
            out.quarantine,
            out.run_id,
        )
        _run_classified(action, out.predictions)
    return arrow_input.rows


@dataclass
class _Gates:
    """The run's gate results so far, and what each gate needs besides its data."""

    previous_rows: int | None
    layout: storage.TableLayout
    run_id: str
    results: list[GateResult] = field(default_factory=list)

    def check(
        self,
        df: DataFrame,
        name: str,
        expectations: tuple[ExpectationConfig, ...],
        error: type[BatchServingError],
        where: str,
    ) -> None:
        """Run one gate, keep its result, and stop the run (with a saved report) if it fails."""
        if not expectations:
            return
        gate = run_gate(df, name, expectations, self.previous_rows)
        self.results.append(gate)
        run_dir = self.layout.run_dir(self.run_id)
        report = write_reports(run_dir, self.results, f"{self.layout.model} run {self.run_id}")
        if not gate.success:
            raise error(
                f"{name} validation failed for {where}: {'; '.join(gate.failures)}; "
                f"report: {report}"
            )


def _previous_input_rows(layout: storage.TableLayout, run_date: dt.date) -> int | None:
    """Input rows of the latest committed run before ``run_date`` (for row_count_change)."""
    earlier = [d for d in layout.committed_dates() if d < run_date.isoformat()]
    if not earlier:
        return None
    manifest = storage.read_manifest(layout.partition_dir(dt.date.fromisoformat(earlier[-1])))
    return int(manifest["input"]["rows"]) if manifest else None


def _spark_action(action: Callable[[], Any], where: str) -> Any:
    """Run a Spark action over the input; an unreadable file becomes a StorageError naming it."""
    try:
        return action()
    except BatchServingError:
        raise
    except Exception as exc:
        text = str(exc)
        match = re.search(r"(?:file:)?(/[^\s'\"\]\[,]+\.parquet)", text)
        culprit = f"Parquet file {match.group(1)}" if match else f"input {where}"
        raise StorageError(f"cannot read {culprit}: {first_line(text)}") from None


def _top_errors(quarantine_dir: Path, top: int = 3) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(quarantine_dir, columns=["error_class", "error_message"]).to_pandas()
    counts = table.groupby("error_class")["error_message"].agg(["count", "first"])
    counts = counts.sort_values("count", ascending=False).head(top)
    return ", ".join(
        f"{cls}: {row['count']} (e.g. {row['first']!r})" for cls, row in counts.iterrows()
    )


@dataclass(frozen=True)
class EngineRun:
    """The inputs both engines share for one run."""

    spark: SparkSession
    cfg: JobConfig
    run_date: dt.date
    spec: ScoringSpec
    feature_types: dict[str, str] | None
    plan: DeliveryPlan
    ref: ModelRef
    out: Staged
    timer: StepTimer
    input_gate: Callable[[DataFrame], None]


def _write_staged(df: Any, staged: Path) -> None:
    _run_classified(lambda: df.write.mode("overwrite").parquet(str(staged)), staged)


def _run_classified(action: Callable[[], object], staged: Path) -> None:
    """Run the Spark job that scores and writes; classify what went wrong if it fails."""
    try:
        action()
    except BatchServingError:
        raise
    except Exception as exc:
        text = str(exc)
        if "PythonException" in text or "Traceback" in text:
            raise ScoringError(f"scoring failed: {python_error_line(text)}") from None
        raise StorageError(f"writing staged output {staged} failed: {first_line(text)}") from None


def python_error_line(text: str) -> str:
    """The last ``SomeError: message`` line of a Python traceback embedded in a Spark error."""
    candidates = [
        line.strip()
        for line in text.splitlines()
        if ":" in line and line.strip().split(":", 1)[0].endswith(("Error", "Exception"))
    ]
    return candidates[-1] if candidates else first_line(text)


def first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else "unknown error"


def _model_section(ref: ModelRef) -> dict[str, Any]:
    return {
        "name": ref.name,
        "version": ref.version,
        "alias": ref.alias,
        "run_id": ref.run_id,
        "uri": ref.uri,
        "artifact_uri": ref.artifact_uri,
        "registry_uri": ref.registry_uri,
    }


def _scoring_section(spec: ScoringSpec, plan: DeliveryPlan) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "features": list(spec.features),
        "classes": list(spec.classes),
        "positive_label": spec.positive_label,
        "output_columns": [f.name for f in spec.output_fields()],
        "delivery": plan.strategy,
        "artifact_mb": round(plan.artifact_mb, 3),
        "model_loads": plan.handle.loads.value,
        "python_workers": len(plan.handle.workers.value),
    }
