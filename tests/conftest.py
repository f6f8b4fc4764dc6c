"""Shared fixtures: ONE local[2] SparkSession and ONE SQLite MLflow registry per test session.

Builders (``warehouse``, ``register``, ``job_config``) create the rows, models and configs a
test needs inside ``tmp_path``; every registered model gets a unique name so each test starts
with cold per-worker model caches.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import itertools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from batch_serving import sample_data
from batch_serving.config import CatalogConfig, JobConfig, SparkConfig
from batch_serving.spark.connect import ConnectServer, is_connect
from batch_serving.spark.session import build_session, server_conf

REPO = Path(__file__).resolve().parents[1]
# tests/ holds the shared helpers (builders, live, ...); unit/<package>/ and
# integration/<package>/ mirror src/batch_serving. A few integration modules reuse another's
# setup (e.g. test_bad_input.Setup), so every test directory is importable by module name.
sys.path.insert(0, str(REPO / "tests"))
for _tests in sorted((REPO / "tests").glob("*/*/")):
    if _tests.name != "__pycache__":
        sys.path.append(str(_tests))

RUN_DATE = dt.date(2026, 11, 22)
CONNECT_APART = (
    "Spark Connect tests run in their own pytest process: PySpark allows no Connect client "
    "beside a classic session (make test runs `pytest -m connect` after the rest)"
)


@pytest.hookimpl(trylast=True)  # after -m/-k have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """One session per mode and process: when classic and Connect tests are both selected,
    the Connect ones are skipped here (visibly) and ``make test`` runs them on their own."""
    connect = [item for item in items if item.get_closest_marker("connect")]
    if connect and len(connect) < len(items):
        for item in connect:
            item.add_marker(pytest.mark.skip(reason=CONNECT_APART))


TEST_SPARK_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "250",
}


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    from batch_serving.spark.session import build_session

    metastore = tmp_path_factory.mktemp("metastore")
    session = build_session(
        SparkConfig(master="local[2]", conf=TEST_SPARK_CONF),
        "tests",
        catalog=CatalogConfig(),
        metastore_dir=metastore,
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real SQLite-backed registry with a file artifact store, shared by all tests."""
    import mlflow

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("tests", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment("tests")
    return uri


_names = itertools.count()


def register_model(
    tracking_uri: str,
    model: Any,
    sample: pd.DataFrame | None = None,
    *,
    name: str | None = None,
    alias: str = "champion",
    pyfunc: bool = False,
    trusted: list[str] | None = None,
    signature: bool = True,
) -> tuple[str, int]:
    """Log + register ``model`` (a fresh name unless given) and point ``alias`` at it."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    model_name = name or f"m{next(_names)}"
    mlflow.set_tracking_uri(tracking_uri)
    sig = infer_signature(sample) if (signature and sample is not None) else None
    with mlflow.start_run():
        if pyfunc:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                signature=sig,
                registered_model_name=model_name,
            )
        else:
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=sig,
                registered_model_name=model_name,
                skops_trusted_types=trusted,
            )
    version = int(info.registered_model_version)
    MlflowClient(tracking_uri).set_registered_model_alias(model_name, alias, str(version))
    return model_name, version


@pytest.fixture
def register(tracking_uri: str) -> Callable[..., tuple[str, int]]:
    """Log + register a model under a fresh name; returns (name, version)."""
    return functools.partial(register_model, tracking_uri)


@pytest.fixture
def warehouse(tmp_path: Path) -> Callable[..., Path]:
    """Write a frame as the input partition for a date (2 files); returns the table root."""
    root = tmp_path / "warehouse" / "features"

    def _write(frame: pd.DataFrame, run_date: dt.date = RUN_DATE, files: int = 2) -> Path:
        sample_data.write_partition(root, run_date, frame, files=files)
        return root

    return _write


@pytest.fixture
def job_config(tmp_path: Path, tracking_uri: str) -> Callable[..., JobConfig]:
    """A valid JobConfig pointing at this test's tmp dirs; keyword overrides per section."""

    def _config(model_name: str, **overrides: Any) -> JobConfig:
        data: dict[str, Any] = {
            "job": "test_job",
            "model": {"name": model_name, "alias": "champion", "tracking_uri": tracking_uri},
            "input": {"path": str(tmp_path / "warehouse" / "features")},
            "entity_columns": [sample_data.ENTITY],
            "output": {"root": str(tmp_path / "out")},
            "spark": {"master": "local[2]", "conf": TEST_SPARK_CONF},
            # tables and MLflow run records have their own tests (test_catalog.py)
            "catalog": {"enabled": False},
            "tracking": {"log_runs": False},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return JobConfig.model_validate(data)

    return _config


def customers(rows: int = 600, seed: int = 3) -> pd.DataFrame:
    """Test rows: the sample customer table (numeric + categorical features, no label)."""
    return sample_data.customer_features(rows, seed=seed).drop(columns=["churned"])


def labelled(rows: int = 600, seed: int = 3) -> pd.DataFrame:
    return sample_data.customer_features(rows, seed=seed)


@dataclass(frozen=True)
class Scored:
    """Two committed prediction partitions of one real scoring job, plus the in-process oracle."""

    cfg: JobConfig
    dates: tuple[dt.date, dt.date]
    expected: dict[dt.date, dict[int, float]]  # run date -> customer_id -> model.predict_proba

    def config(self, serving_root: Path, **publish: Any) -> JobConfig:
        """The job config with its own serving root (each test publishes into its own)."""
        data = self.cfg.model_dump(mode="json")
        data["publish"] = {**data["publish"], "root": str(serving_root), **publish}
        return JobConfig.model_validate(data)


@pytest.fixture(scope="session")
def scored(
    spark: SparkSession, tracking_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Scored:
    """Score two dates for real (different feature values per date, so scores differ)."""
    import builders
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from batch_serving.runs.job import run_score

    root = tmp_path_factory.mktemp("scored")
    model, oracle = builders.logreg_pipeline(labelled(800))
    mlflow.set_tracking_uri(tracking_uri)
    sample = customers(300)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(sample[builders.FEATURES]),
            registered_model_name="served",
        )
    MlflowClient(tracking_uri).set_registered_model_alias(
        "served", "champion", str(info.registered_model_version)
    )
    dates = (RUN_DATE - dt.timedelta(days=1), RUN_DATE)
    cfg = JobConfig.model_validate(
        {
            "job": "served_job",
            "model": {"name": "served", "alias": "champion", "tracking_uri": tracking_uri},
            "input": {"path": str(root / "warehouse")},
            "entity_columns": [sample_data.ENTITY],
            "output": {"root": str(root / "out")},
            "spark": {"master": "local[2]", "conf": TEST_SPARK_CONF},
            "tracking": {"experiment": "served-runs"},
        }
    )
    expected: dict[dt.date, dict[int, float]] = {}
    for seed, day in enumerate(dates, start=10):
        rows = customers(500, seed=seed)
        sample_data.write_partition(root / "warehouse", day, rows, files=2)
        run_score(spark, cfg, day)
        expected[day] = dict(
            zip(rows["customer_id"].tolist(), oracle(rows)["score"].tolist(), strict=True)
        )
    return Scored(cfg=cfg, dates=dates, expected=expected)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the session; skipped only if it truly cannot be started."""
    from live import RedisServer

    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"redis-server unavailable: {exc}")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[Any]:
    """One moto S3 server (the real S3 HTTP protocol, loopback, its own process group) for the
    session; tests keep apart by using a fresh bucket each."""
    from live import S3Server

    server = S3Server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Apache Kafka broker (KRaft, one node, its own process group) for the session;
    a broker that cannot start fails the tests that need it (no jars: run `make jars`)."""
    from batch_serving.kafka_broker import BrokerUnavailable, KafkaBroker

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except BrokerUnavailable as exc:
        pytest.fail(f"Kafka broker unavailable: {exc}")
    yield broker
    broker.stop()


# Spark Connect (tests marked `connect`, run in a process of their own): ONE local server per
# test session, stopped with its process group; `remote` is the client session.
@pytest.fixture(scope="session")
def connect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("connect") / "server.log"
    server = ConnectServer(conf=server_conf(SparkConfig(conf=TEST_SPARK_CONF)), log=log)
    server.start()
    try:
        yield server.url
    finally:
        close_connect_clients()
        server.stop()


def close_connect_clients() -> None:
    """Closes every Connect client of this process before its server goes: an open client
    cleans up on the server at exit and, with the server gone, retries for many minutes."""
    from pyspark.sql.connect.client.core import SparkConnectClient

    for client in [o for o in gc.get_objects() if isinstance(o, SparkConnectClient)]:
        if not client.is_closed:
            client.close()


@pytest.fixture(scope="session")
def remote(connect_url: str) -> SparkSession:
    session = build_session(SparkConfig(remote=connect_url, conf=TEST_SPARK_CONF), "tests")
    assert is_connect(session)
    return session
