"""Build a run's report and the index page from the files the runs left (no Spark, no rows).

Paths (stable, for MLflow to log):
- ``<output.root>/_runs/predictions/<model>/<run_id>/report.html``: the run's report
- ``<output.root>/_runs/predictions/<model>/<run_id>/profile.json``: the run's drift profile
- ``<output.root>/_runs/index.html``: every run of every model under that root
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from batch_serving.config import JobConfig
from batch_serving.errors import PublishError
from batch_serving.monitoring import svg
from batch_serving.monitoring.drift import same_bins
from batch_serving.monitoring.history import REPORT_NAME, committed_manifests, drift_gate, list_runs
from batch_serving.monitoring.profile import (
    PROFILE_NAME,
    ColumnSpec,
    Profile,
    ProfileSpec,
    read_profile,
)
from batch_serving.monitoring.reference import model_profile
from batch_serving.monitoring.report import RunReport, render_index, render_run
from batch_serving.quality.data_docs import docs_name, write_data_docs
from batch_serving.scoring.cascade_check import StageEvidence
from batch_serving.scoring.comparison import NONE
from batch_serving.storage import local_only
from batch_serving.storage.files import data_files
from batch_serving.tables.layout import TableLayout, predictions_layout, quarantine_layout
from batch_serving.tables.manifest import (
    RunManifest,
    read_after_commit,
    read_manifest,
)

INDEX_NAME = "index.html"
# replaced and uncommitted runs the index lists per model (newest); `batch-serving runs` lists
# them all. Every committed date is listed.
INDEX_OTHER_RUNS = 10


def build_reports(cfg: JobConfig, run_date: dt.date | None = None) -> Path:
    """(Re)build the report of the run committed for ``run_date`` (default: the latest
    committed date) and the index page; return the report's path."""
    layout = predictions_layout(cfg.output.root, cfg.model.name)
    dates = layout.committed_dates()
    if run_date is None:
        if not dates:
            raise PublishError(f"no committed partition under {layout.table_dir}: no report")
        run_date = dt.date.fromisoformat(dates[-1])
    partition = local_only(layout.partition_dir(run_date), "the run report")
    manifest = read_manifest(partition)
    if manifest is None:
        raise PublishError(f"no committed run for {run_date} under {layout.table_dir}")
    html = render_run(gather(cfg, layout, manifest, read_profile(partition / PROFILE_NAME)))
    path = _write(local_only(layout.run_dir(manifest.run_id), "the run report") / REPORT_NAME, html)
    build_index(Path(cfg.output.root), cfg)
    return path


def gather(
    cfg: JobConfig, layout: TableLayout, manifest: RunManifest, profile: Profile | None
) -> RunReport:
    drift = manifest.drift
    references = drift.get("references", [])
    loaded = [_reference(cfg, layout, r) for r in references]
    reference_profiles = [p for p in loaded if p is not None]
    after = read_after_commit(layout.run_dir(manifest.run_id))
    durations = after.durations_s if after is not None and after.durations_s else None
    report = RunReport(
        title=f"{manifest.job} · {manifest.run_date}",
        job=manifest.job,
        model=f"{manifest.model.name} v{manifest.model.version}",
        run_id=manifest.run_id,
        engine=manifest.scoring.engine,
        rows_in=manifest.input.rows,
        rows_out=manifest.output.rows,
        quarantined=manifest.quarantine.rows,
        max_bad_rows=manifest.quarantine.max_bad_rows,
        reference=_describe(references),
        history=cfg.monitoring.history,
    )
    if profile is not None:
        for spec in profile.spec.columns:
            refs = reference_profiles
            if spec.role == "member_score" and not _binned_alike(refs, spec):
                refs = [*refs, *_member_training(cfg, manifest, spec)]
            plot = _plot(profile, refs, spec.name)
            if plot is not None:
                target = report.score_plots if spec.role != "feature" else report.feature_plots
                target.append({"name": spec.name, "svg": plot})
    report.drift_rows = _drift_rows(cfg, layout, manifest)
    run_dir = local_only(layout.run_dir(manifest.run_id), "the run report")
    report.gates = _gates(cfg, manifest, run_dir)
    report.top_errors = _top_errors(quarantine_layout(cfg.output.root, cfg.model.name), manifest)
    report.comparisons = [_comparison(k, v) for k, v in manifest.comparison.items()]
    report.cascade = [_stage(s) for s in manifest.scoring.cascade]
    report.durations = _durations(durations or manifest.durations_s)
    return report


def _reference(cfg: JobConfig, layout: TableLayout, source: Mapping[str, Any]) -> Profile | None:
    if source.get("kind") == "model":
        return model_profile(cfg.model.tracking_uri, source.get("model_run_id"))
    run_id = source.get("run_id")
    if not run_id:
        return None
    return read_profile(local_only(layout.run_dir(str(run_id)), "drift history") / "profile.json")


def _describe(references: list[Mapping[str, Any]]) -> str:
    if not references:
        return "none yet: this run's profile is the reference of the next run"
    parts = []
    for r in references:
        if r.get("kind") == "model":
            run = r.get("model_run_id")
            parts.append(f"training data logged with the model (MLflow run {run})")
        else:
            parts.append(f"run {r.get('run_id')} of {r.get('run_date')}")
    return "; then ".join(parts)


def _binned_alike(references: list[Profile], spec: ColumnSpec) -> bool:
    return any((c := r.column(spec.name)) and same_bins(spec, c[0]) for r in references)


def _member_training(cfg: JobConfig, manifest: RunManifest, spec: ColumnSpec) -> list[Profile]:
    """A shadow's score that no run reference has (its first run, say) is plotted against its
    own model's training profile (that profile's score column), unless the job takes
    references from previous runs only: the champion's training profile has no such column."""
    if cfg.monitoring.reference == "previous":
        return []
    key = spec.name.partition(".")[0]
    run_id = next((m.run_id for m in manifest.members if m.key == key), None)
    found = model_profile(cfg.model.tracking_uri, run_id)
    if found is None:
        return []
    scores = [c for c in found.spec.columns if c.role == "score"]
    if not scores:
        return []
    renamed = dataclasses.replace(scores[0], name=spec.name, role=spec.role)
    counts = {spec.name: found.counts[scores[0].name]}
    return [Profile(ProfileSpec((renamed,)), counts, found.source)]


def _plot(profile: Profile, references: list[Profile], name: str) -> str | None:
    """This run's bin shares against the first reference binned the same way (as ``compare``)."""
    found = profile.column(name)
    if found is None:
        return None
    spec, counts = found
    total = counts.counts.sum()
    current = (counts.counts / total).tolist() if total else [0.0] * spec.bins
    ref: list[float] | None = None
    for reference in references:
        theirs = reference.column(name)
        if theirs is not None and same_bins(spec, theirs[0]) and theirs[1].counts.sum():
            ref = (theirs[1].counts / theirs[1].counts.sum()).tolist()
            break
    return svg.histogram(current, ref, spec.labels(), f"{name}: this run vs reference")


def _drift_rows(cfg: JobConfig, layout: TableLayout, manifest: RunManifest) -> list[dict[str, Any]]:
    columns = manifest.drift.get("columns", {})
    past = [m for m in committed_manifests(layout) if m.run_date <= manifest.run_date]
    past = past[-cfg.monitoring.history :]
    _, blocking, warnings = drift_gate(manifest.drift, cfg.monitoring.gates)
    rows = []
    for name, values in sorted(columns.items(), key=lambda kv: -kv[1]["psi"]):
        series = [m.drift.get("columns", {}).get(name, {}).get("psi") for m in past]
        gate = "ok"
        if any(msg.split(" ")[1] == name for msg in blocking):
            gate = "block"
        elif any(msg.split(" ")[1] == name for msg in warnings):
            gate = "warn"
        rows.append({**values, "spark": svg.sparkline(series), "gate": gate})
    return rows


def _gates(cfg: JobConfig, manifest: RunManifest, run_dir: Path) -> list[dict[str, Any]]:
    pages = set(write_data_docs(run_dir))  # GX's pages, beside the report in the run's dir
    gates = [
        {
            "name": f"Great Expectations: {name}",
            "success": g.success,
            "details": "; ".join([f"{g.checked} expectations", *g.warnings]),
            "docs": docs_name(name) if docs_name(name) in pages else None,
        }
        for name, g in manifest.validation.items()
    ]
    outcome, blocking, warnings = drift_gate(manifest.drift, cfg.monitoring.gates)
    details = "; ".join([*blocking, *warnings]) or {
        "off": "monitoring was off for this run",
        "no_reference": "no reference yet",
    }.get(outcome, "every PSI under its threshold")
    gates.append({"name": "drift (publish)", "success": outcome != "blocked", "details": details})
    return gates


def _top_errors(layout: TableLayout, manifest: RunManifest, top: int = 5) -> list[dict[str, Any]]:
    if not manifest.quarantine.rows:
        return []
    files = data_files(layout.partition_dir(dt.date.fromisoformat(manifest.run_date)))
    if not files:
        return []
    table = pq.read_table([str(f) for f in files], columns=["error_class", "error_message"])
    classes = table.column("error_class").to_pylist()
    messages = table.column("error_message").to_pylist()
    seen: dict[str, list[Any]] = {}
    for cls, message in zip(classes, messages, strict=True):
        entry = seen.setdefault(str(cls), [0, message])
        entry[0] += 1
    ranked = sorted(seen.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"cls": c, "count": n, "example": str(m)[:300]} for c, (n, m) in ranked]


def _comparison(shadow: str, values: Mapping[str, Any]) -> dict[str, Any]:
    flips: Mapping[str, Mapping[str, int]] = values.get("flips", {})
    columns = sorted({s for row in flips.values() for s in row}, key=lambda a: (a == NONE, a))

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    return {
        "shadow": shadow,
        "rows": values.get("rows"),
        "compared": values.get("compared"),
        "agreement": fmt(values.get("agreement")),
        "correlation": fmt(values.get("correlation")),
        "mean_abs_diff": fmt(values.get("mean_abs_diff")),
        "columns": columns,
        "matrix": [
            {"action": c, "counts": [row.get(s, 0) for s in columns]} for c, row in flips.items()
        ],
    }


def _stage(stage: StageEvidence) -> dict[str, Any]:
    """One cascade stage's row of the report, numbers formatted (``-``: not checked)."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    return {
        "member": stage.member,
        "answer_if": stage.answer_if or "(the rest)",
        "seen": stage.seen,
        "share_seen": pct(stage.share_seen),
        "answered": stage.answered,
        "share_answered": pct(stage.share_answered),
        "quarantined": stage.quarantined,
        "share_quarantined": pct(stage.share_quarantined),
        "checked": stage.checked or "-",
        "mean_abs_diff": "-" if stage.mean_abs_diff is None else f"{stage.mean_abs_diff:.4f}",
        "flips": "-" if stage.flips is None else stage.flips,
        "flip_share": pct(stage.flip_share),
        "decision": stage.decision or "",
    }


STEP_ORDER = (
    "resolve_model",
    "load_model",
    "read",
    "validate",
    "drift_reference",
    "score_and_stage",
    "reconcile",
    "validate_output",
    "commit",
)


def _durations(durations: Mapping[str, float]) -> list[dict[str, Any]]:
    """In the order the steps run (the records store them sorted by name)."""
    longest = max([*durations.values(), 1e-9])
    rank = {name: i for i, name in enumerate(STEP_ORDER)}
    steps = sorted(durations.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
    return [{"step": k, "seconds": v, "width": int(np.ceil(240 * v / longest))} for k, v in steps]


def build_index(root: Path, cfg: JobConfig) -> Path:
    """``<root>/_runs/index.html``: the runs of every model with records under ``root``."""
    runs_root = root / "_runs" / "predictions"
    models = sorted(p.name for p in runs_root.iterdir() if p.is_dir()) if runs_root.is_dir() else []
    if cfg.model.name not in models:
        models.append(cfg.model.name)
    sections = []
    for model in models:
        layout = predictions_layout(str(root), model)
        rows = []
        runs, hidden = list_runs(layout, cfg.monitoring.gates, INDEX_OTHER_RUNS)
        for run in reversed(runs):
            row = run.to_dict()
            link = f"predictions/{model}/{run.run_id}/{REPORT_NAME}"
            row["link"] = link if run.report is not None else None
            rows.append(row)
        sections.append({"model": model, "runs": rows, "hidden": hidden})
    return _write(root / "_runs" / INDEX_NAME, render_index(sections))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
