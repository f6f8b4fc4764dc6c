"""The runs list and the index page from the files runs leave (no Spark): the index keeps only
the newest replaced/uncommitted runs per model, and says how many it left out."""

from __future__ import annotations

import json
from pathlib import Path

from batch_serving.config import JobConfig
from batch_serving.config.sections import DriftGatesConfig
from batch_serving.monitoring.build import INDEX_OTHER_RUNS, build_index
from batch_serving.monitoring.history import list_runs
from batch_serving.tables.layout import predictions_layout


def leave_runs(root: Path, model: str, count: int) -> list[str]:
    """``count`` runs of one date that each committed and were replaced by the next one (a
    run directory with its after-commit record and profile, no partition holding it)."""
    ids = [f"20260101T{i:06d}-{i:08x}" for i in range(count)]
    for run_id in ids:
        directory = root / "_runs" / "predictions" / model / run_id
        directory.mkdir(parents=True)
        (directory / "_after_commit.json").write_text(json.dumps({"run_id": run_id}))
        profile = {"source": {"run_date": "2026-01-01"}, "columns": {}}
        (directory / "profile.json").write_text(json.dumps(profile))
    return ids


def test_the_runs_list_has_every_run_and_the_index_the_newest(tmp_path: Path) -> None:
    root = tmp_path / "out"
    ids = leave_runs(root, "churn", INDEX_OTHER_RUNS + 5)
    layout = predictions_layout(str(root), "churn")
    every, hidden = list_runs(layout, DriftGatesConfig())
    assert [r.run_id for r in every] == ids and hidden == 0
    assert {(r.status, r.run_date) for r in every} == {("replaced", "2026-01-01")}
    newest, hidden = list_runs(layout, DriftGatesConfig(), latest_others=3)
    assert [r.run_id for r in newest] == ids[-3:] and hidden == len(ids) - 3

    cfg = JobConfig.model_validate(
        {
            "job": "churn",
            "model": {"name": "churn", "alias": "champion", "tracking_uri": "sqlite:///x.db"},
            "input": {"path": str(tmp_path / "in")},
            "entity_columns": ["id"],
            "output": {"root": str(root)},
        }
    )
    page = build_index(root, cfg).read_text()
    shown = [run_id for run_id in ids if run_id in page]
    assert shown == ids[-INDEX_OTHER_RUNS:]
    assert "5 older replaced or uncommitted runs not shown" in page
