"""The scoring job: config -> resolve model -> read -> validate -> score -> write -> commit.

Each step is a call into its own module; this module only sequences them, times them and
makes sure that a failure at any point discards the staged output and leaves the committed
partition as it was.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from batch_serving import __version__, arrow_engine, storage
from batch_serving.config import JobConfig
from batch_serving.delivery import DeliveryPlan, plan_delivery, release
from batch_serving.errors import (
    BatchServingError,
    OutputValidationError,
    ScoringError,
    StorageError,
)
from batch_serving.model_io import download_model, load_model_dir
from batch_serving.reader import (
    missing_partition,
    partition_exists,
    partition_path,
    read_partition,
)
from batch_serving.registry import ModelRef, resolve_model
from batch_serving.scorer import ScoringSpec, build_spec
from batch_serving.scoring import score, with_model_columns
from batch_serving.validate import plan_casts, select_for_scoring

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"


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
    return storage.TableLayout(Path(cfg.output.root), PREDICTIONS, cfg.model.name)


def run_score(spark: SparkSession, cfg: JobConfig, run_date: dt.date) -> RunResult:
    """Score ``run_date`` and commit its predictions partition; raise on any failure."""
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run_id = new_run_id(started)
    timer = StepTimer()
    layout = output_layout(cfg)
    staged = layout.staging_dir(run_id)
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
        if engine == "arrow_direct":
            input_rows = _run_arrow_direct(
                spark, cfg, run_date, spec, feature_types, plan, ref, started, staged, timer
            )
        else:
            input_rows = _run_dataframe(
                spark, cfg, run_date, spec, feature_types, plan, ref, started, staged, timer
            )
        with timer.step("reconcile"):
            output_rows = storage.count_rows(staged)
            output_files = len(storage.data_files(staged))
            if output_rows != input_rows:
                raise OutputValidationError(
                    f"staged output has {output_rows} rows but input {where} has "
                    f"{input_rows}; nothing committed"
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
            "output": {
                "path": str(layout.partition_dir(run_date)),
                "rows": output_rows,
                "files": output_files,
            },
            "versions": {"batch_serving": __version__, "spark": spark.version},
        }
        with timer.step("commit"):
            manifest["durations_s"] = timer.durations
            storage.write_manifest(staged, manifest)
            committed = storage.commit(layout, run_date, staged, run_id)
    finally:
        storage.discard(staged)
        release(plan)
    log.info("committed %d rows to %s", committed.rows, committed.path)
    return RunResult(manifest=manifest, committed=committed)


def choose_engine(cfg: JobConfig) -> str:
    """``auto``: arrow_direct for plain Parquet on a filesystem path, else dataframe."""
    if cfg.engine != "auto":
        return cfg.engine
    return "arrow_direct" if arrow_engine.is_local_path(cfg.input.path) else "dataframe"


def _run_dataframe(
    spark: SparkSession,
    cfg: JobConfig,
    run_date: dt.date,
    spec: ScoringSpec,
    feature_types: dict[str, str] | None,
    plan: DeliveryPlan,
    ref: ModelRef,
    started: dt.datetime,
    staged: Path,
    timer: StepTimer,
) -> int:
    where = partition_path(cfg.input, run_date)
    with timer.step("read"):
        df = read_partition(spark, cfg.input, run_date)
        input_rows = df.count()
    log.info("input %s: %d rows (engine dataframe)", where, input_rows)
    with timer.step("validate"):
        selected = select_for_scoring(
            df, cfg.entity_columns, spec.features, feature_types, spec.feed == "numpy", where
        )
    with timer.step("score_and_stage"):
        scored = score(selected, cfg.entity_columns, spec, plan.handle)
        _write_staged(with_model_columns(scored, ref, started), staged)
    return input_rows


def _run_arrow_direct(
    spark: SparkSession,
    cfg: JobConfig,
    run_date: dt.date,
    spec: ScoringSpec,
    feature_types: dict[str, str] | None,
    plan: DeliveryPlan,
    ref: ModelRef,
    started: dt.datetime,
    staged: Path,
    timer: StepTimer,
) -> int:
    where = partition_path(cfg.input, run_date)
    with timer.step("read"):
        if not partition_exists(cfg.input, run_date):
            raise missing_partition(cfg.input, run_date)
        arrow_input = arrow_engine.inspect_input(where)
    log.info(
        "input %s: %d rows in %d files (engine arrow_direct)",
        where,
        arrow_input.rows,
        len(arrow_input.files),
    )
    with timer.step("validate"):
        casts = plan_casts(
            arrow_engine.spark_schema(arrow_input),
            cfg.entity_columns,
            spec.features,
            feature_types,
            spec.feed == "numpy",
            where,
        )
    with timer.step("score_and_stage"):
        run = functools.partial(
            arrow_engine.run,
            spark,
            arrow_input,
            cfg.entity_columns,
            casts,
            spec,
            plan.handle,
            ref,
            started,
            staged,
        )
        _run_classified(run, staged)
    return arrow_input.rows


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
