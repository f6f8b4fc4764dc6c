"""The runs of a job's model, from the files they left: committed manifests and run directories.

A committed partition's manifest is the record of the run it holds; a run directory
(``_runs/predictions/<model>/<run_id>/``) whose run holds no partition is a run that was later
replaced (it committed, then a rerun of its date took over) or one that never committed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from batch_serving.config.sections import DriftGatesConfig
from batch_serving.monitoring.gates import evaluate
from batch_serving.storage import local_only
from batch_serving.tables.layout import TableLayout
from batch_serving.tables.manifest import (
    AFTER_COMMIT_NAME,
    RunManifest,
    read_manifest,
)

REPORT_NAME = "report.html"


@dataclass(frozen=True)
class RunRow:
    """One run, as ``batch-serving runs`` lists it (``--json``: these keys, stable)."""

    run_id: str
    run_date: str | None
    status: str  # committed | replaced | not_committed
    model_version: int | None
    rows_in: int | None
    rows_out: int | None
    quarantined: int | None
    validation: str  # pass | fail | n/a  (Great Expectations gates)
    drift_gate: str  # pass | warn | blocked | no_reference | off
    score_psi: float | None
    max_psi: float | None
    max_psi_column: str | None
    blocking: list[str]
    warnings: list[str]
    report: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_gate(
    drift: Mapping[str, Any], gates: DriftGatesConfig
) -> tuple[str, list[str], list[str]]:
    """(outcome, blocking, warnings) of a manifest's drift section under today's thresholds."""
    if not drift:
        return "off", [], []
    columns = drift.get("columns", {})
    if not columns:
        return "no_reference", [], []
    outcome = evaluate(gates, columns)
    if outcome.blocking:
        return "blocked", outcome.blocking, outcome.warnings
    return ("warn" if outcome.warnings else "pass"), [], outcome.warnings


def committed_manifests(layout: TableLayout) -> list[RunManifest]:
    """Manifests of the committed partitions, oldest date first."""
    found = []
    for day in layout.committed_dates():
        manifest = read_manifest(layout.partition_dir(dt.date.fromisoformat(day)))
        if manifest is not None:
            found.append(manifest)
    return found


def list_runs(
    layout: TableLayout, gates: DriftGatesConfig, latest_others: int | None = None
) -> tuple[list[RunRow], int]:
    """Committed runs (oldest date first), then runs whose data no partition holds (oldest
    first; only the newest ``latest_others`` of them if set: each costs a file read, and
    every rerun of a date leaves one). Also returns how many of those were left out."""
    rows = [_committed_row(m, layout, gates) for m in committed_manifests(layout)]
    held = {r.run_id for r in rows}
    parent = local_only(layout.root, "the runs list") / "_runs" / layout.table / layout.model
    found = sorted(p for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    others = [d for d in found if d.name not in held]  # run ids sort by start time
    keep = others if latest_others is None else others[max(0, len(others) - latest_others) :]
    rows += [_other_row(directory) for directory in keep]
    return rows, len(others) - len(keep)


def _committed_row(manifest: RunManifest, layout: TableLayout, gates: DriftGatesConfig) -> RunRow:
    outcome, blocking, warnings = drift_gate(manifest.drift, gates)
    columns = manifest.drift.get("columns", {})
    top = max(columns.values(), key=lambda c: c["psi"], default=None)
    score = [c["psi"] for c in columns.values() if c["role"] == "score"]
    report = layout.run_dir(manifest.run_id) / REPORT_NAME
    return RunRow(
        run_id=manifest.run_id,
        run_date=manifest.run_date,
        status="committed",
        model_version=manifest.model.version,
        rows_in=manifest.input.rows,
        rows_out=manifest.output.rows,
        quarantined=manifest.quarantine.rows,
        validation="fail" if manifest.failed_gates() else "pass" if manifest.validation else "n/a",
        drift_gate=outcome,
        score_psi=max(score) if score else None,
        max_psi=top["psi"] if top else None,
        max_psi_column=top["name"] if top else None,
        blocking=blocking,
        warnings=warnings,
        report=str(report) if report.is_file() else None,
    )


def _other_row(directory: Path) -> RunRow:
    """A run no partition holds: its date from its profile, if it got that far."""
    run_date = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        run_date = json.loads((directory / "profile.json").read_text())["source"]["run_date"]
    replaced = (directory / AFTER_COMMIT_NAME).is_file()
    return RunRow(
        run_id=directory.name,
        run_date=run_date,
        status="replaced" if replaced else "not_committed",
        model_version=None,
        rows_in=None,
        rows_out=None,
        quarantined=None,
        validation="n/a",
        drift_gate="n/a",
        score_psi=None,
        max_psi=None,
        max_psi_column=None,
        blocking=[],
        warnings=[],
        report=None,
    )
