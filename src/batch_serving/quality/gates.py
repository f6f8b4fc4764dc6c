"""Data-quality gates with Great Expectations (GX 1.x): input before scoring, output before commit.

Expectations are declared per job under ``validation.input_expectations`` and
``validation.output_expectations``. A failing *blocking* expectation stops the run (input: before
scoring; output: before commit, the staged output is discarded). Non-blocking ones are logged.
GX is imported lazily (1-4 s) and only when a job declares expectations; ``preload_gx`` starts
that import in the background when the run starts.

Speed: the expectations GX answers from counts and aggregates (nulls, between, in set, row
count, min/max/mean ...) are planned as metrics (``metric_plan``). With the ``arrow_direct``
engine the scoring tasks count them on the rows they read and write (``task_metrics``: no
Spark job at all), so the input gate is evaluated right after scoring, before anything is
committed; with the ``dataframe`` engine they share ONE Spark aggregation (``onepass``) and
the input gate runs before scoring. Any other GX expectation runs through GX on the
DataFrame. Either way GX evaluates the metrics and the results are GX's
``ExpectationValidationResult`` objects, saved as ``_validation.json``.
"""

from __future__ import annotations

import html
import json
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from batch_serving.config import ExpectationConfig, JobConfig
from batch_serving.errors import BatchServingError, ConfigError
from batch_serving.quality.data_docs import VALIDATION_JSON, write_data_docs
from batch_serving.quality.metric_plan import MetricPlan, MetricSpec
from batch_serving.quality.task_metrics import MetricCounts, MetricsObserver
from batch_serving.storage import AnyPath

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)
_PRELOAD: threading.Thread | None = None


@dataclass
class GateResult:
    """Outcome of one gate: one line per failed expectation, plus GX's full result."""

    name: str
    success: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


def preload_gx() -> None:
    """Start importing GX in a background thread (1-4 s here), so that a gate later in the
    run finds it loaded instead of waiting for it. Idempotent; a failed import surfaces when
    the gate imports GX itself."""
    global _PRELOAD
    if _PRELOAD is None and "great_expectations" not in sys.modules:
        _PRELOAD = threading.Thread(target=_import_gx, name="gx-preload", daemon=True)
        _PRELOAD.start()


def preload_gx_for(cfg: JobConfig) -> None:
    """``preload_gx`` if the job declares expectations (call it before building the session:
    the import then overlaps the JVM's start)."""
    if cfg.validation.input_expectations or cfg.validation.output_expectations:
        preload_gx()


def await_gx_preload() -> None:
    """Wait for a background import still running. Importing GX from two threads at once can
    hand one of them a partially initialized module (GX's own imports are circular), so every
    function here that imports GX calls this first."""
    if _PRELOAD is not None:
        _PRELOAD.join()


def _import_gx() -> None:
    try:
        import great_expectations.expectations.expectation  # noqa: F401
    except Exception:  # reported by the gate's own import
        return


@dataclass
class PlannedGate:
    """A gate's expectations as GX objects, and which of them the scoring tasks answer.

    ``in_task``: expectation index -> its metrics, counted by the tasks (``task_metrics``);
    ``metrics``/``keys``: every such metric once, and its GX metric id."""

    name: str
    declared: list[tuple[ExpectationConfig, Any]]
    in_task: dict[int, MetricPlan] = field(default_factory=dict)
    metrics: tuple[MetricSpec, ...] = ()
    keys: tuple[Any, ...] = ()
    constants: dict[Any, Any] = field(default_factory=dict)

    @property
    def counted_in_task(self) -> bool:
        return bool(self.in_task)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.column for m in self.metrics if m.column is not None))

    def observer(self) -> MetricsObserver | None:
        """What the scoring tasks count for this gate (None: nothing, Spark answers it all);
        the input gate counts the batches read, the output gate the predictions written."""
        if not self.metrics:
            return None
        side: Literal["input", "output"] = "input" if self.name == "input" else "output"
        columns = self.columns if side == "input" else ()
        return MetricsObserver(self.name, self.metrics, side, columns)

    def metric_values(self, counts: MetricCounts | None) -> dict[Any, Any]:
        got = counts if counts is not None else MetricCounts.empty(self.metrics)
        return {**self.constants, **dict(zip(self.keys, got.values(self.metrics), strict=True))}


def plan_gate(
    name: str,
    expectations: tuple[ExpectationConfig, ...],
    previous_rows: int | None,
    schema: pa.Schema | None = None,
) -> PlannedGate | None:
    """The gate's GX expectations (None if none applies), and with ``schema`` (the batches the
    scoring tasks see) the ones whose metrics the tasks can count."""
    await_gx_preload()
    from batch_serving.quality.metric_plan import plan_expectation, spark_type_names
    from batch_serving.quality.task_metrics import supported

    declared: list[tuple[ExpectationConfig, Any]] = []
    for exp in expectations:
        gx_exp = to_gx(exp, previous_rows, name)
        if gx_exp is None:
            log.info("%s gate: %s skipped (no previous run to compare with)", name, exp.label)
            continue
        declared.append((exp, gx_exp))
    if not declared:
        return None
    gate = PlannedGate(name, declared)
    if schema is None:
        return gate
    types = spark_type_names(schema)
    combined = MetricPlan()
    for i, (_, gx_exp) in enumerate(declared):
        plan = plan_expectation(gx_exp, types)
        if plan is not None and all(supported(m, schema) for m in plan.metrics.values()):
            gate.in_task[i] = plan
            combined.merge(plan)
    gate.keys = tuple(combined.metrics)
    gate.metrics = tuple(combined.metrics.values())
    gate.constants = combined.constants
    return gate


def finish_gate(
    gate: PlannedGate,
    counts: MetricCounts | None,
    frame: Callable[[], DataFrame],
) -> GateResult:
    """GX's results for every declared expectation: from the tasks' counts where planned, the
    rest from one Spark aggregation over ``frame()`` or GX's own run on it. Never raises for
    data problems; results keep the declared order."""
    await_gx_preload()
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.validator.validation_statistics import calc_validation_statistics

    from batch_serving.quality.onepass import evaluate, validate_in_one_pass

    name, declared = gate.name, gate.declared
    objects = [gx_exp for _, gx_exp in declared]
    results: dict[int, Any] = {}
    rest = [i for i in range(len(declared)) if i not in gate.in_task]
    if gate.in_task:
        got, refused = evaluate(objects, gate.in_task, gate.metric_values(counts))
        results.update(got)
        rest = sorted([*rest, *refused])
    spark_run = 0
    if rest:
        df = frame()
        skip = [i for i in range(len(declared)) if i not in rest]
        got, by_gx = validate_in_one_pass(df, objects, skip)
        results.update(got)
        spark_run = len(rest)
        if by_gx:
            log.info("%s gate: %d expectation(s) run by GX on the DataFrame", name, len(by_gx))
            results.update(
                zip(by_gx, validate_with_gx(df, name, [objects[i] for i in by_gx]), strict=True)
            )
    ordered = [results[i] for i in range(len(declared))]
    stats = calc_validation_statistics(ordered)
    suite_result = ExpectationSuiteValidationResult(
        success=stats.success,
        results=ordered,
        suite_name=f"{name}_suite",
        statistics=stats._asdict(),
    )
    result = GateResult(name, True, checked=len(ordered), raw=suite_result.to_json_dict())
    for item, (exp, _) in zip(ordered, declared, strict=True):
        if item.success:
            continue
        line = describe(item)
        if exp.blocking:
            result.failures.append(line)
            result.success = False
        else:
            result.warnings.append(line)
    log.info(
        "%s gate: %d/%d expectations passed (%d counted while scoring, %d by Spark)%s",
        name,
        result.checked - len(result.failures) - len(result.warnings),
        result.checked,
        result.checked - spark_run,
        spark_run,
        f"; non-blocking failures: {result.warnings}" if result.warnings else "",
    )
    return result


def run_gate(
    df: DataFrame, name: str, expectations: tuple[ExpectationConfig, ...], previous_rows: int | None
) -> GateResult:
    """Validate ``df`` against ``expectations`` through Spark (one aggregation, then GX for
    the rest); never raises for data problems."""
    gate = plan_gate(name, expectations, previous_rows)
    if gate is None:
        return GateResult(name, True)
    return finish_gate(gate, None, lambda: df)


def validate_with_gx(df: DataFrame, name: str, expectations: list[Any]) -> list[Any]:
    """GX's own validation of ``df`` (its Spark jobs), one result per expectation in order."""
    await_gx_preload()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_spark(name=f"batch_serving_{name}").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": df}
    )
    suite = gx.ExpectationSuite(name=f"{name}_suite")
    for expectation in expectations:
        suite.add_expectation(expectation)
    pending: dict[str, list[Any]] = {}
    for result in batch.validate(suite).results:
        pending.setdefault(_key(result.expectation_config), []).append(result)
    # GX may reorder (column existence first): match results to the declared expectations
    return [pending[_key(e.configuration)].pop(0) for e in expectations]


def _key(config: Any) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    return json.dumps([config.type, kwargs], sort_keys=True, default=str)


def to_gx(exp: ExpectationConfig, previous_rows: int | None, gate: str = "input") -> Any:
    """Our small expectation vocabulary, or any GX class by name -> GX 1.x expectation objects."""
    await_gx_preload()
    import great_expectations as gx

    e = gx.expectations
    if exp.gx_class is not None:
        try:
            return getattr(e, exp.gx_class)(**exp.kwargs)
        except Exception as exc:  # pydantic (v1) validation of GX's own arguments
            problem = " ".join(str(exc).split())
            raise ConfigError(
                f"invalid validation.{gate}_expectations entry {exp.gx_class}: {problem}"
            ) from None
    column = exp.column or ""  # config validation guarantees a column for column expectations
    if exp.type == "not_null":
        return e.ExpectColumnValuesToNotBeNull(column=column)
    if exp.type == "null_fraction":
        return e.ExpectColumnValuesToNotBeNull(column=column, mostly=1 - (exp.max_fraction or 0))
    if exp.type == "between":
        return e.ExpectColumnValuesToBeBetween(column=column, min_value=exp.min, max_value=exp.max)
    if exp.type == "in_set":
        return e.ExpectColumnValuesToBeInSet(column=column, value_set=list(exp.values or ()))
    if exp.type == "unique":
        return e.ExpectColumnValuesToBeUnique(column=column)
    if previous_rows is None:
        return None
    pct = (exp.max_change_pct or 0) / 100
    return e.ExpectTableRowCountToBeBetween(
        min_value=int(previous_rows * (1 - pct)), max_value=int(previous_rows * (1 + pct) + 0.5)
    )


def describe(item: Any) -> str:
    """One line: which expectation, on what, and what was observed."""
    config = item.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id",)}
    res = item.result or {}
    if res.get("observed_value") is not None:
        seen = f"observed {res['observed_value']}"
    else:
        seen = (
            f"{res.get('unexpected_count')} of {res.get('element_count')} rows unexpected, "
            f"e.g. {res.get('partial_unexpected_list', [])[:5]}"
        )
    return f"{config.type}({', '.join(f'{k}={v}' for k, v in kwargs.items())}): {seen}"


def write_reports(
    directory: AnyPath, gates: list[GateResult], title: str, docs: bool = False
) -> AnyPath:
    """``_validation.json`` (GX results) and ``_validation.html`` (one summary table of every
    gate) in ``directory``; with ``docs``, GX's Data Docs page per gate too (``data_docs``).

    The ``_`` prefix keeps them out of the data when the directory is a table partition."""
    directory.mkdir(parents=True, exist_ok=True)
    pages = write_data_docs(directory, {g.name: g.raw for g in gates}) if docs else []
    payload = {
        g.name: {"success": g.success, "failures": g.failures, "warnings": g.warnings, "gx": g.raw}
        for g in gates
    }
    (directory / VALIDATION_JSON).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    report = directory / "_validation.html"
    report.write_text(_html(gates, title, pages))
    return report


def _html(gates: list[GateResult], title: str, pages: list[str]) -> str:
    rows = []
    for gate in gates:
        for item in gate.raw.get("results", []):
            config = item.get("expectation_config", {})
            kwargs = {k: v for k, v in config.get("kwargs", {}).items() if k != "batch_id"}
            res = item.get("result", {}) or {}
            seen = res.get("observed_value")
            if seen is None:
                seen = f"{res.get('unexpected_count')} unexpected of {res.get('element_count')}"
            status = "PASS" if item.get("success") else "FAIL"
            rows.append(
                f"<tr class='{status.lower()}'><td>{html.escape(gate.name)}</td>"
                f"<td>{status}</td><td>{html.escape(str(config.get('type')))}</td>"
                f"<td>{html.escape(json.dumps(kwargs, default=str))}</td>"
                f"<td>{html.escape(str(seen))}</td></tr>"
            )
    body = "\n".join(rows) or "<tr><td colspan='5'>no expectations declared</td></tr>"
    links = " ".join(f"<a href='{html.escape(p)}'>{html.escape(p)}</a>" for p in pages)
    docs = f"<p>Great Expectations Data Docs: {links}</p>" if links else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:4px 8px;border-bottom:1px solid #ddd}}
.fail{{background:#fdd}} .pass{{background:#efe}}</style></head>
<body><h1>{html.escape(title)}</h1>
{docs}
<table><tr><th>gate</th><th>status</th><th>expectation</th><th>arguments</th><th>observed</th></tr>
{body}
</table></body></html>
"""


@dataclass
class GateRunner:
    """A run's gate results so far; a failing gate stops the run with its report saved."""

    previous_rows: int | None
    report_dir: AnyPath
    title: str
    results: list[GateResult] = field(default_factory=list)

    def plan(
        self, name: str, expectations: tuple[ExpectationConfig, ...], schema: pa.Schema | None
    ) -> PlannedGate | None:
        """``plan_gate`` with this run's previous row count (None: nothing to check)."""
        if not expectations:
            return None
        return plan_gate(name, expectations, self.previous_rows, schema)

    def finish(
        self,
        gate: PlannedGate | None,
        counts: MetricCounts | None,
        frame: Callable[[], DataFrame],
        error: type[BatchServingError],
        where: str,
    ) -> None:
        """Evaluate ``gate``, save the reports, raise ``error`` naming the failures."""
        if gate is None:
            return
        result = finish_gate(gate, counts, frame)
        self.results.append(result)
        # a failing gate stops the run: render GX's Data Docs pages now, people will look
        report = write_reports(self.report_dir, self.results, self.title, not result.success)
        if not result.success:
            raise error(
                f"{gate.name} validation failed for {where}: {'; '.join(result.failures)}; "
                f"report: {report}"
            )
