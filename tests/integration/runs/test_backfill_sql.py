"""`batch-serving backfill` (idempotent over a date range) and `batch-serving sql` over the
registered tables. In-process (the commands reuse the session's SparkSession and metastore);
subprocess runs with their own Derby metastore are covered by the Airflow end-to-end test."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import builders
import pyarrow.parquet as pq
import yaml
from conftest import RUN_DATE, customers, labelled

from batch_serving.cli import main


def test_backfill_twice_then_sql(
    spark, register, warehouse, tracking_uri, tmp_path: Path, capsys
) -> None:
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

    def cli(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    spans = [(days[0], days[2], "(3/3)"), (days[2], days[2], "(1/1)")]
    for first, last, progress in spans:  # the rerun replaces its dates: same rows, no duplicates
        code, out, err = cli(
            "backfill",
            "--config",
            str(config),
            "--from",
            str(first),
            "--to",
            str(last),
            "--publish",
        )
        assert code == 0, err[-3000:]
        assert f"backfill: {days[2]} -> 140 rows {progress}" in out
        for day, rows in sizes.items():
            partition = tmp_path / "out" / "predictions" / name / f"ds={day}"
            assert pq.read_table(partition).num_rows == rows
    pointer = json.loads((tmp_path / "out" / "serving" / name / "CURRENT.json").read_text())
    assert pointer["current"].startswith(f"{days[2]}_v1_")

    query = f"SELECT ds, count(*) AS n FROM predictions.{name} GROUP BY ds ORDER BY ds"
    code, out, err = cli("sql", "--config", str(config), query)
    assert code == 0, err[-3000:]
    rows = [line.split("|")[1:3] for line in out.splitlines() if line.startswith("|2026")]
    assert [(d.strip(), int(n)) for d, n in rows] == [(str(d), sizes[d]) for d in days]

    code, _, err = cli("sql", "--config", str(config), "SELECT * FROM predictions.nope")
    assert code == 2 and "table or view 'predictions.nope' not found; tables: " in err
    code, _, err = cli(
        "backfill", "--config", str(config), "--from", str(days[2]), "--to", str(days[0])
    )
    assert code == 2 and "is before --from" in err
