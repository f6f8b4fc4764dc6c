"""``examples/score_and_explore.ipynb`` runs top to bottom on a small committed job.

The notebook's own checks (fresh scores vs ``predict_proba``, vs the committed partition, Spark
vs in process) raise inside it; this test also compares the scores it prints with the session
job's in-process oracle.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, Scored

NOTEBOOK = REPO / "examples" / "score_and_explore.ipynb"


@pytest.mark.slow
def test_example_notebook_runs_every_cell(
    scored: Scored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(scored.cfg.model_dump(mode="json")))
    day = scored.dates[1]
    monkeypatch.setenv("BS_NOTEBOOK_CONFIG", str(config))
    monkeypatch.setenv("BS_NOTEBOOK_RUN_DATE", day.isoformat())
    monkeypatch.setenv("BS_NOTEBOOK_SPARK_MASTER", "local[1]")

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on any error

    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    last = "".join(o.get("text", "") for o in code[-1].outputs if o.output_type == "stream")
    summary = json.loads(last.strip().splitlines()[-1])
    assert summary["rows"] == len(scored.expected[day])
    assert summary["model_uri"] == "models:/served/1"
    assert max(summary["max_abs_diff"].values()) <= 1e-12
    expected = scored.expected[day]
    assert summary["first_scores"] == pytest.approx(
        {str(k): expected[k] for k in sorted(expected)[:5]}, abs=1e-12
    )
