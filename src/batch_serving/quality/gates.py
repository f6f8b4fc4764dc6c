"""Data-quality gates with Great Expectations (GX 1.x): input before scoring, output before commit.

Expectations are declared per job under ``validation.input_expectations`` and
``validation.output_expectations``. A failing *blocking* expectation stops the run (input: before
scoring; output: before commit, the staged output is discarded). Non-blocking ones are logged.
GX is imported lazily (about 4 s) and only when a job declares expectations.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batch_serving.config import ExpectationConfig
from batch_serving.errors import BatchServingError
from batch_serving.tables.storage import AnyPath

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)


@dataclass
class GateResult:
    """Outcome of one gate: one line per failed expectation, plus GX's full result."""

    name: str
    success: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


def run_gate(
    df: DataFrame, name: str, expectations: tuple[ExpectationConfig, ...], previous_rows: int | None
) -> GateResult:
    """Validate ``df`` against ``expectations``; never raises for data problems."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_spark(name=f"batch_serving_{name}").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": df}
    )
    suite = gx.ExpectationSuite(name=f"{name}_suite")
    blocking: dict[int, bool] = {}
    for exp in expectations:
        gx_exp = to_gx(exp, previous_rows)
        if gx_exp is None:
            log.info("%s gate: %s skipped (no previous run to compare with)", name, exp.type)
            continue
        added = suite.add_expectation(gx_exp)
        blocking[id(added)] = exp.blocking
    if not suite.expectations:
        return GateResult(name, True)
    result = batch.validate(suite)
    gate = GateResult(name, True, checked=len(result.results), raw=result.to_json_dict())
    for item, exp_obj in zip(result.results, suite.expectations, strict=True):
        if item.success:
            continue
        line = describe(item)
        if blocking.get(id(exp_obj), True):
            gate.failures.append(line)
            gate.success = False
        else:
            gate.warnings.append(line)
    log.info(
        "%s gate: %d/%d expectations passed%s",
        name,
        gate.checked - len(gate.failures) - len(gate.warnings),
        gate.checked,
        f"; non-blocking failures: {gate.warnings}" if gate.warnings else "",
    )
    return gate


def to_gx(exp: ExpectationConfig, previous_rows: int | None) -> Any:
    """Our small expectation vocabulary -> GX 1.x expectation objects."""
    import great_expectations as gx

    e = gx.expectations
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


def write_reports(directory: AnyPath, gates: list[GateResult], title: str) -> AnyPath:
    """``_validation.json`` (GX results) and ``_validation.html`` (readable) in ``directory``.

    The ``_`` prefix keeps them out of the data when the directory is a table partition."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        g.name: {"success": g.success, "failures": g.failures, "warnings": g.warnings, "gx": g.raw}
        for g in gates
    }
    (directory / "_validation.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    report = directory / "_validation.html"
    report.write_text(_html(gates, title))
    return report


def _html(gates: list[GateResult], title: str) -> str:
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
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:4px 8px;border-bottom:1px solid #ddd}}
.fail{{background:#fdd}} .pass{{background:#efe}}</style></head>
<body><h1>{html.escape(title)}</h1>
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

    def check(
        self,
        df: DataFrame,
        name: str,
        expectations: tuple[ExpectationConfig, ...],
        error: type[BatchServingError],
        where: str,
    ) -> None:
        if not expectations:
            return
        gate = run_gate(df, name, expectations, self.previous_rows)
        self.results.append(gate)
        report = write_reports(self.report_dir, self.results, self.title)
        if not gate.success:
            raise error(
                f"{name} validation failed for {where}: {'; '.join(gate.failures)}; "
                f"report: {report}"
            )
