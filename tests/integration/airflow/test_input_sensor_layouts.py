"""The input sensor looks where the job reads: the date in its own format, under the filter.

``inputs.partition_ready`` (plain pyarrow, no Airflow) for ``dt=20261122/region=eu`` and
``region=eu/ds=...`` layouts (a metastore table's directory comes from ``resolve-input``:
tests/unit/airflow/test_table_input_await.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from conftest import REPO, RUN_DATE

from batch_serving.config import JobConfig

sys.path.insert(0, str(REPO / "airflow_dags"))
from batch_serving_airflow.inputs import awaited, partition_ready

DS = str(RUN_DATE)


def config(inputs: dict[str, Any], **sections: Any) -> JobConfig:
    return JobConfig.model_validate(
        {
            "job": "layout_job",
            "model": {"name": "m", "alias": "champion", "tracking_uri": "sqlite:////tmp/m.db"},
            "input": inputs,
            "entity_columns": ["customer_id"],
            "output": {"root": "/tmp/out"},
            **sections,
        }
    )


def test_sensor_waits_for_the_filtered_directory_of_a_yyyymmdd_date(tmp_path: Path) -> None:
    cfg = config(
        {
            "path": str(tmp_path),
            "partition_column": "dt",
            "partition_format": "yyyyMMdd",
            "partition_filter": {"region": "eu"},
        }
    )
    (tmp_path / "dt=20261122" / "region=us").mkdir(parents=True)
    (tmp_path / "dt=20261122" / "region=us" / "_SUCCESS").touch()
    (tmp_path / f"dt={DS}" / "region=eu").mkdir(parents=True)
    (tmp_path / f"dt={DS}" / "region=eu" / "_SUCCESS").touch()  # an ISO date: not this format
    assert partition_ready(cfg, DS) is False
    (tmp_path / "dt=20261122" / "region=eu").mkdir()
    (tmp_path / "dt=20261122" / "region=eu" / "_SUCCESS").touch()
    assert partition_ready(cfg, DS) is True
    assert awaited(cfg, DS) == f"{tmp_path}/dt=20261122/region=eu/_SUCCESS"
    assert (
        awaited(cfg, "{{ ds }}") == f"{tmp_path}/dt=<{{{{ ds }}}} as yyyyMMdd>/region=eu/_SUCCESS"
    )


def test_sensor_follows_a_filter_nested_above_the_date(tmp_path: Path) -> None:
    cfg = config(
        {
            "path": str(tmp_path),
            "partition_filter": {"region": "eu"},
            "partitioned_by": ["region", "ds"],
        }
    )
    partition = tmp_path / "region=eu" / f"ds={DS}"
    partition.mkdir(parents=True)
    assert partition_ready(cfg, DS) is False
    (partition / "_SUCCESS").touch()
    assert partition_ready(cfg, DS) is True
