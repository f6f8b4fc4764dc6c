"""The score task's spark-submit arguments carry ``jars/s3a/lib`` as a console run gets them:
on the driver's classpath, for a local master of a job on S3, unless the job sets its jars or
classpath itself (``submit.submit_arguments``; plain data, no Airflow)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from batch_serving.config import JobConfig

sys.path.insert(0, str(REPO / "airflow_dags"))
from batch_serving_airflow.submit import submit_arguments

CLASSPATH = "spark.driver.extraClassPath"


def job(inputs: dict[str, Any], root: str = "/tmp/out", **spark: Any) -> JobConfig:
    return JobConfig.model_validate(
        {
            "job": "s3_job",
            "model": {"name": "m", "alias": "champion", "tracking_uri": "sqlite:////tmp/m.db"},
            "input": inputs,
            "entity_columns": ["customer_id"],
            "output": {"root": root},
            "catalog": {"enabled": "table" in inputs},
            "spark": spark,
        }
    )


@pytest.fixture
def libs(tmp_path: Path) -> tuple[Path, Path]:
    """``jars/lib`` with the Kafka jar, ``jars/s3a/lib`` with hadoop-aws and the SDK bundle."""
    connectors, s3a = tmp_path / "lib", tmp_path / "s3a" / "lib"
    for lib, names in ((connectors, ["kafka.jar"]), (s3a, ["hadoop-aws.jar", "bundle.jar"])):
        lib.mkdir(parents=True)
        for name in names:
            (lib / name).touch()
    return connectors, s3a


@pytest.mark.parametrize(
    ("inputs", "root"),
    [
        ({"path": "s3://bucket/warehouse"}, "/tmp/out"),
        ({"path": "/data/warehouse"}, "s3a://bucket/out"),
        ({"table": "db.features"}, "/tmp/out"),  # its location is known only at run time
    ],
    ids=["s3-input", "s3a-output", "table-input"],
)
def test_local_master_on_s3_gets_the_s3a_jars_on_the_driver_classpath(
    libs: tuple[Path, Path], inputs: dict[str, Any], root: str
) -> None:
    connectors, s3a = libs
    submit = submit_arguments(job(inputs, root, master="local[2]"), "-Dq=1", connectors, s3a)
    expected = os.pathsep.join([str(s3a / "bundle.jar"), str(s3a / "hadoop-aws.jar")])
    assert submit.conf[CLASSPATH] == expected
    assert submit.arguments == {"jars": str(connectors / "kafka.jar")}  # not on --jars
    assert submit.operator_kwargs()["conf"][CLASSPATH] == expected


def test_local_files_or_another_master_get_no_s3a_jars(libs: tuple[Path, Path]) -> None:
    connectors, s3a = libs
    local = submit_arguments(job({"path": "/data/warehouse"}), "", connectors, s3a)
    assert CLASSPATH not in local.conf
    yarn = job({"path": "s3://bucket/warehouse"}, master="yarn")
    assert CLASSPATH not in submit_arguments(yarn, "", connectors, s3a).conf
    no_lib = submit_arguments(job({"path": "s3://b/w"}), "", connectors, s3a.parent / "none")
    assert CLASSPATH not in no_lib.conf


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        ({"spark.jars": "/opt/hadoop-aws.jar"}, {"jars": "/opt/hadoop-aws.jar"}),
        ({CLASSPATH: "/opt/aws/*"}, {}),
    ],
    ids=["spark.jars", "extraClassPath"],
)
def test_a_job_that_sets_its_jars_or_classpath_keeps_its_own(
    libs: tuple[Path, Path], own: dict[str, str], expected: dict[str, str]
) -> None:
    connectors, s3a = libs
    cfg = job({"path": "s3://bucket/warehouse"}, conf=own)
    submit = submit_arguments(cfg, "", connectors, s3a)
    assert submit.conf.get(CLASSPATH) == own.get(CLASSPATH)  # the job's, or none at all
    assert str(s3a) not in str(submit.operator_kwargs())
    assert submit.arguments.get("jars") == expected.get("jars", str(connectors / "kafka.jar"))
