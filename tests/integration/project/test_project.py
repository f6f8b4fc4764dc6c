"""Project files: the production overlay loads over the base job, and the wheel ships the
license, the type marker and the Spark logging file."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

from batch_serving.config import load_config


def test_prod_overlay_loads_over_the_base_job() -> None:
    base = load_config(REPO / "conf" / "jobs" / "churn.yaml")
    prod = load_config(REPO / "conf" / "jobs" / "churn.yaml", env="prod")

    assert prod.model.tracking_uri == "http://mlflow.prod.internal:5000"
    assert {m.key: m.model.tracking_uri for m in prod.member_models()} == {
        "champion": prod.model.tracking_uri,
        "challenger": prod.model.tracking_uri,  # members inherit the registry settings
    }
    assert prod.spark.master == "yarn"
    assert prod.spark.conf["spark.executor.instances"] == "8"
    assert prod.spark.conf["spark.driver.memory"] == "4g"  # overlay wins key by key
    assert prod.publish.backends == ("embedded", "redis")
    assert prod.catalog.metastore_uri is not None and prod.catalog.metastore_uri.startswith(
        "thrift://"
    )
    assert (prod.input.path, prod.output.root) == (
        "/mnt/warehouse/customer_features",
        "/mnt/ml/batch-serving",
    )
    # what production does not override is the base's
    assert prod.rules == base.rules and prod.validation == base.validation
    assert prod.members == base.members and prod.job == base.job
    assert prod.digest() != base.digest()


@pytest.mark.slow
def test_wheel_ships_license_type_marker_and_log4j_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("batch_serving-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"batch_serving/py.typed", "batch_serving/spark/log4j2.properties"} <= names
    license_file = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
    text = zipfile.ZipFile(wheel).read(license_file).decode()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()
