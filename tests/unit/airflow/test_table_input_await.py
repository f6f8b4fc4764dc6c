"""What the input sensor waits for on an ``input.table``: the directory ``resolve-input``
found in the metastore, and its marker (``inputs.partition_ready`` with ``partition``); and
the record ``resolve-input --json`` prints (``tables.inputs.awaited_partition``; for a path
input through the CLI itself, which needs no Spark)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, RUN_DATE

from batch_serving.cli import main
from batch_serving.config import JobConfig
from batch_serving.errors import ConfigError
from batch_serving.tables.inputs import awaited_partition

sys.path.insert(0, str(REPO / "airflow_dags"))
from batch_serving_airflow.inputs import awaited, partition_ready

DS = str(RUN_DATE)


def job(inputs: dict[str, Any], **schedule: Any) -> dict[str, Any]:
    return {
        "job": "table_job",
        "model": {"name": "m", "alias": "champion", "tracking_uri": "sqlite:////tmp/m.db"},
        "input": inputs,
        "entity_columns": ["customer_id"],
        "output": {"root": "/tmp/out"},
        "catalog": {"enabled": "table" in inputs},
        "schedule": schedule,
    }


def table_job(**schedule: Any) -> JobConfig:
    return JobConfig.model_validate(job({"table": "db.features"}, **schedule))


def test_table_partition_is_ready_only_once_its_marker_is_there(tmp_path: Path) -> None:
    cfg = table_job()
    partition = tmp_path / "region=eu" / f"ds={DS}"
    assert partition_ready(cfg, DS, str(partition)) is False  # not there at all
    partition.mkdir(parents=True)
    (partition / "part-00000.parquet").write_bytes(b"PAR1")
    assert partition_ready(cfg, DS, str(partition)) is False  # half-written: no marker
    (partition / "_SUCCESS").touch()
    assert partition_ready(cfg, DS, str(partition)) is True
    assert awaited(cfg, DS, str(partition)) == f"{partition}/_SUCCESS"


def test_table_without_its_resolved_partition_is_refused_not_waved_through() -> None:
    cfg = table_job(input_marker="_LOADED")
    with pytest.raises(ConfigError, match=r"input\.table db\.features is not resolved"):
        partition_ready(cfg, DS)
    assert awaited(cfg, "{{ ds }}") == (
        "<partition {{ ds }} of input.table db.features, from resolve-input>/_LOADED"
    )


def resolved(
    inputs: dict[str, Any], location: str, columns: tuple[str, ...], **sched: Any
) -> JobConfig:
    """The job after the metastore's answer (``spark.input_table.resolve_input``)."""
    cfg = JobConfig.model_validate(job({"table": "db.features", **inputs}, **sched))
    return cfg.model_copy(update={"input": cfg.input.resolved(location, columns)})


def test_record_of_a_resolved_table_names_its_date_directory_and_marker() -> None:
    regional = resolved(
        {"partition_filter": {"region": "eu"}},
        "s3://lake/features",
        ("region", "ds"),
        input_marker=None,
    )
    assert awaited_partition(regional, RUN_DATE).to_dict() == {
        "input": "db.features",
        "run_date": DS,
        "root": "s3://lake/features",
        "partition": f"s3://lake/features/region=eu/ds={DS}",
        "marker": None,
    }
    compact = resolved(
        {"partition_column": "dt", "partition_format": "yyyyMMdd"}, "/lake/hive", ("dt",)
    )
    found = awaited_partition(compact, dt.date(2026, 11, 22))
    assert (found.partition, found.marker) == ("/lake/hive/dt=20261122", "_SUCCESS")
    assert found.lines() == ["input db.features for 2026-11-22: /lake/hive/dt=20261122/_SUCCESS"]


def test_resolve_input_command_prints_the_record_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job({"path": str(tmp_path / "warehouse")})))
    assert main(["resolve-input", "--config", str(config), "--run-date", DS, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record == {
        "input": str(tmp_path / "warehouse"),
        "run_date": DS,
        "root": str(tmp_path / "warehouse"),
        "partition": f"{tmp_path / 'warehouse'}/ds={DS}",
        "marker": "_SUCCESS",
    }
    assert main(["resolve-input", "--config", str(config), "--run-date", "2026-11-31"]) == 2
