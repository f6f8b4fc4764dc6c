"""The executors' environment archive (`make package`) carries what executors import and no more:
the core (scoring, adapters, mlflow-skinny to fetch models), not Spark's jars or pyspark (the
cluster's Spark provides them), not the driver's extras (Great Expectations, full MLflow,
ONNX, Redis, Kafka), nor tests and bytecode. tests/test_cluster.py runs a job with it."""

from __future__ import annotations

import tarfile

import pytest
from conftest import REPO

ENV_ARCHIVE = REPO / "dist" / "batch-serving-env.tar.gz"
SITE = "lib/python3.11/site-packages/"
MAX_MIB = 150


@pytest.fixture(scope="module")
def members() -> list[str]:
    if not ENV_ARCHIVE.is_file():
        pytest.fail(f"{ENV_ARCHIVE} missing: run `make package` (make test does)")
    with tarfile.open(ENV_ARCHIVE) as tar:
        return tar.getnames()


def packages(members: list[str]) -> set[str]:
    return {m[len(SITE) :].split("/")[0] for m in members if m.startswith(SITE)}


def test_archive_is_at_most_150_mib() -> None:
    if not ENV_ARCHIVE.is_file():
        pytest.fail(f"{ENV_ARCHIVE} missing: run `make package` (make test does)")
    assert ENV_ARCHIVE.stat().st_size <= MAX_MIB * 2**20


def test_archive_holds_what_executors_import(members: list[str]) -> None:
    found = packages(members)
    for name in ("batch_serving", "mlflow", "sklearn", "skops", "pyarrow", "pandas", "numpy"):
        assert name in found, name
    assert "bin/python" in members


def test_archive_leaves_out_the_driver_extras_spark_tests_and_bytecode(
    members: list[str],
) -> None:
    found = packages(members)
    driver_only = {
        "pyspark",
        "great_expectations",
        "sqlalchemy",
        "alembic",
        "matplotlib",
        "onnxruntime",
        "redis",
        "confluent_kafka",
        "prometheus_client",
        "catboost",
    }
    assert sorted(found & driver_only) == []
    assert [m for m in members if "/__pycache__/" in m][:3] == []
    assert [m for m in members if m.startswith(SITE) and "/tests/" in m][:3] == []
