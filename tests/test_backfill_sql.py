"""`batch-serving backfill` (idempotent over a date range) and `batch-serving sql` over the
registered tables, as real subprocesses with their own Derby metastore."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import builders
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import RUN_DATE, customers, labelled

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "batch-serving")


def test_backfill_twice_then_sql(register, warehouse, tracking_uri, tmp_path: Path) -> None:
    model, _ = builders.logreg_pipeline(labelled(400))
    days = [RUN_DATE - dt.timedelta(days=2), RUN_DATE - dt.timedelta(days=1), RUN_DATE]
    sizes = {days[0]: 120, days[1]: 130, days[2]: 140}
    for n, day in enumerate(days):
        warehouse(customers(sizes[day], seed=20 + n), day)
    name, _ = register(model, customers(50)[builders.FEATURES])
    config = tmp_path / "conf" / "jobs" / "bf.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(
        yaml.safe_dump(
            {
                "job": "bf",
                "model": {"name": name, "alias": "champion", "tracking_uri": tracking_uri},
                "input": {"path": str(tmp_path / "warehouse" / "features")},
                "entity_columns": ["customer_id"],
                "output": {"root": "out"},  # -> tmp_path/out (the dir holding conf/)
                "tracking": {"log_runs": False},
                "spark": {"conf": {"spark.sql.shuffle.partitions": 2}},
            }
        )
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *args], capture_output=True, text=True, timeout=600, cwd=tmp_path.parent
        )

    spans = [(days[0], days[2], "(3/3)"), (days[1], days[2], "(2/2)")]
    for first, last, progress in spans:  # the rerun replaces its dates: same rows, no duplicates
        run = cli(
            "backfill",
            "--config",
            str(config),
            "--from",
            str(first),
            "--to",
            str(last),
            "--publish",
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"backfill: {days[2]} -> 140 rows {progress}" in run.stdout
        for day, rows in sizes.items():
            partition = tmp_path / "out" / "predictions" / name / f"ds={day}"
            assert pq.read_table(partition).num_rows == rows
    pointer = json.loads((tmp_path / "out" / "serving" / name / "CURRENT.json").read_text())
    assert pointer["current"].startswith(f"{days[2]}_v1_")

    query = f"SELECT ds, count(*) AS n FROM predictions.{name} GROUP BY ds ORDER BY ds"
    sql = cli("sql", "--config", str(config), query)
    assert sql.returncode == 0, sql.stderr[-3000:]
    rows = [line.split("|")[1:3] for line in sql.stdout.splitlines() if line.startswith("|2026")]
    assert [(d.strip(), int(n)) for d, n in rows] == [(str(d), sizes[d]) for d in days]

    bad = cli("sql", "--config", str(config), "SELECT * FROM predictions.nope")
    assert bad.returncode == 2 and "query failed" in bad.stderr and "nope" in bad.stderr
    reversed_span = cli(
        "backfill", "--config", str(config), "--from", str(days[2]), "--to", str(days[0])
    )
    assert reversed_span.returncode == 2 and "is before --from" in reversed_span.stderr
