"""``make demo``'s code path on small data, twice (it must be idempotent)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from conftest import REPO

from batch_serving.demo import run_demo


def test_demo_runs_end_to_end_and_is_idempotent(spark, tmp_path, monkeypatch) -> None:
    # relative paths resolve against the directory holding conf/: a copy puts them in tmp_path
    config = tmp_path / "conf" / "jobs" / "churn.yaml"
    config.parent.mkdir(parents=True)
    shutil.copy(REPO / "conf" / "jobs" / "churn.yaml", config)
    monkeypatch.chdir(REPO)  # and the working directory does not matter
    day = dt.date(2026, 11, 22)

    first = "\n".join(run_demo(config, day, rows=3000, days=2))
    second = "\n".join(run_demo(config, day, rows=3000, days=2))

    partition = tmp_path / "data" / "output" / "predictions" / "churn" / "ds=2026-11-22"
    for summary in (first, second):
        assert "3000 in -> 3000 out" in summary
        assert "churn v1 (models:/churn@champion" in summary  # reused, not re-registered
        assert str(partition) in summary
        assert "SELECT * FROM parquet.`" in summary
        assert "lookup API answered GET /v1/models/churn/predictions/42" in summary
        assert '"entity_id": "42", "model_version": 1, "as_of": "2026-11-22"' in summary
        assert "curl -s http://127.0.0.1:8000/v1/models/churn/predictions/42" in summary
        # make demo ends with the run report (drift against the training profile: the same
        # sample generator, so small, and publish was allowed)
        last = summary.splitlines()[-1]
        assert last.startswith("run report: ")
        report = Path(last.removeprefix("run report: "))
        assert report.is_file()
        for gate in ("input", "output"):  # GX's Data Docs page per gate, linked from the report
            assert f'href="_datadocs_{gate}.html"' in report.read_text()
            assert "Expectation Suite:" in (report.parent / f"_datadocs_{gate}.html").read_text()
        assert "publish gate: pass" in summary
    assert (tmp_path / "data" / "output" / "serving" / "churn" / "CURRENT.json").is_file()
    table = pq.read_table(partition)
    assert table.num_rows == 3000
    scores = table.column("score").to_numpy()
    assert ((scores > 0) & (scores < 1)).all()
    assert sorted(
        p.name for p in (tmp_path / "data" / "warehouse" / "customer_features").iterdir()
    ) == ["ds=2026-11-21", "ds=2026-11-22"]
    assert Path(tmp_path / "mlruns" / "mlflow.db").is_file()
