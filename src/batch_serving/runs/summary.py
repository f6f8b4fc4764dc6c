"""Human-readable run summaries, built from the manifest and the run's after-commit record
(so logs and files agree)."""

from __future__ import annotations

from batch_serving.scoring.cascade_check import StageEvidence
from batch_serving.scoring.comparison import ComparisonSummary
from batch_serving.tables.manifest import AfterCommit, RunManifest


def summary_lines(manifest: RunManifest, after: AfterCommit | None = None) -> list[str]:
    return [
        *_header(manifest, after),
        *_members(manifest),
        *cascade_lines(manifest),
        *_drift(manifest),
        *_hygiene(manifest),
        *_after(after),
    ]


def _drift(manifest: RunManifest) -> list[str]:
    """Monitoring: the largest PSIs and the drift gate as recorded at run time."""
    drift = manifest.drift
    if not drift:
        return []
    columns = sorted(drift.get("columns", {}).values(), key=lambda c: -c["psi"])
    if not columns:
        return ["  drift     : no reference yet (this run is the next run's reference)"]
    top = ", ".join(f"{c['name']} {c['psi']:.3f}" for c in columns[:3])
    gate = drift.get("gate", {})
    outcome = "pass" if gate.get("success", True) else "; ".join(gate.get("blocking", []))
    return [f"  drift     : PSI {top} (largest first); publish gate: {outcome}"]


def cascade_lines(manifest: RunManifest) -> list[str]:
    """Per cascade stage: the rows it saw, answered and quarantined (shares of the rows
    entering the cascade) and, with a check sample, its agreement with the last stage."""
    stages = manifest.scoring.cascade
    if not stages:
        return []
    last = stages[-1].member
    width = max(len(s.member) for s in stages)
    lines = [f"  cascade   : {stages[0].seen} rows entered"]
    for s in stages:
        condition = f" if {s.answer_if}" if s.answer_if else " (the rest)"
        lines.append(
            f"    {s.member:<{width}}  saw {s.seen} ({s.share_seen:.1%}), answered "
            f"{s.answered} ({s.share_answered:.1%}){condition}, quarantined {s.quarantined} "
            f"({s.share_quarantined:.1%})"
        )
        if s.checked:
            lines.append(f"    {'':<{width}}  {_check_line(s, last)}")
    return lines


def _check_line(stage: StageEvidence, last: str) -> str:
    diff = "n/a" if stage.mean_abs_diff is None else f"{stage.mean_abs_diff:.4f}"
    line = f"check vs {last} on {stage.checked} of its answers: mean |score diff| {diff}"
    if stage.flips is None or stage.flip_share is None:
        return f"{line}, no {stage.decision or 'decision'} to compare"
    return f"{line}, {stage.decision} flips {stage.flips} ({stage.flip_share:.1%})"


def _hygiene(manifest: RunManifest) -> list[str]:
    """Staging of dead runs (killed mid-write) that this run removed before scoring."""
    if not manifest.staging_removed:
        return []
    return [
        "  cleanup   : removed staging of dead runs",
        *(f"    {line}" for line in manifest.staging_removed),
    ]


def _header(manifest: RunManifest, after: AfterCommit | None) -> list[str]:
    model, scoring, out = manifest.model, manifest.scoring, manifest.output
    pointer = f"@{model.alias}" if model.alias else f"/{model.version}"
    timings = after.durations_s if after is not None and after.durations_s else manifest.durations_s
    durations = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
    table_root = out.path.rsplit("/", 1)[0]
    columns = scoring.output_columns
    return [
        f"batch-serving: job {manifest.job} scored {manifest.run_date} (run {manifest.run_id})",
        f"  model     : {model.name} v{model.version} (models:/{model.name}{pointer}, "
        f"mlflow run {model.run_id}), {scoring.kind}, delivered by {scoring.delivery}",
        f"  engine    : {scoring.engine}",
        f"  rows      : {manifest.input.rows} in -> {out.rows} out, "
        f"{manifest.quarantine.rows} quarantined",
        f"  input     : {manifest.input.path}",
        f"  output    : {out.path}",
        f"  manifest  : {out.path}/_manifest.json",
        f"  workers   : {scoring.python_workers} Python workers, {scoring.model_loads} model loads",
        f"  durations : {durations}",
        "  query     : SELECT * FROM parquet.`" + table_root + "` "
        f"WHERE ds = DATE'{manifest.run_date}' ORDER BY {columns[0]} DESC LIMIT 10",
    ]


def _members(manifest: RunManifest) -> list[str]:
    """Members, ensemble, rules and the champion-vs-shadow comparison (multi-model runs)."""
    lines = [
        f"    {m.key:<12} {m.name} v{m.version} ({m.role}, {m.kind}, {m.delivery}), "
        f"{m.model_loads} loads in {m.python_workers} workers"
        + (f", inputs {m.inputs}" if m.inputs else "")
        for m in manifest.members
    ]
    if lines:
        lines.insert(0, "  members   :")
    if manifest.ensemble:
        lines.append(f"  ensemble  : {manifest.ensemble}")
    if manifest.rules:
        lines += ["  rules     :", *(f"    {rule}" for rule in manifest.rules)]
    for shadow, values in manifest.comparison.items():
        summary = ComparisonSummary(**values)
        lines += [f"  champion vs {shadow}:", *(f"    {line}" for line in summary.lines())]
    return lines


def _after(after: AfterCommit | None) -> list[str]:
    if after is None:
        return []
    lines = []
    if after.skipped:
        lines.append(f"  after     : skipped ({after.skipped})")
    if after.tables:
        tables = ", ".join(after.tables)
        lines.append(f'  tables    : {tables} (batch-serving sql --config <job file> "...")')
    if after.tracking_enabled:
        run = after.mlflow_run_id or "not logged (tracking server unavailable, see log)"
        lines.append(f"  mlflow    : run {run}")
    return lines
