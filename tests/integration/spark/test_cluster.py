"""The unchanged job on a Spark standalone cluster (master + 2 workers on loopback), with the
code and Python environment shipped the way real clusters get them: `make package` artifacts
(--archives env.tar.gz#environment, PYSPARK_PYTHON=./environment/bin/python)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import builders
import cloudpickle
import pyarrow.parquet as pq
import pyspark
import pytest
import yaml
from chispa import assert_approx_df_equality
from conftest import REPO, RUN_DATE, customers, labelled
from live import free_port

from batch_serving.runs.job import run_score

cloudpickle.register_pickle_by_value(builders)
pytestmark = pytest.mark.slow
ENV_ARCHIVE = REPO / "dist" / "batch-serving-env.tar.gz"
BIN = Path(sys.executable).parent


def spark_env() -> dict[str, str]:
    """No PYSPARK_* from the test process (the submit flags decide); SPARK_HOME = the pip
    package, which is a complete Spark distribution (scripts resolve it via `python`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK")}
    env["SPARK_HOME"] = str(Path(pyspark.__file__).parent)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``spark-class ...Master`` and two ``...Worker`` processes; killed (process groups) after."""
    work = tmp_path_factory.mktemp("cluster")
    port, ui = free_port(), free_port()
    env = {**spark_env(), "SPARK_LOG_DIR": str(work)}
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, name: str) -> None:
        log = open(work / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        procs.append(
            subprocess.Popen(
                [str(BIN / "spark-class"), *args],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        )

    master = f"spark://127.0.0.1:{port}"
    start(
        "org.apache.spark.deploy.master.Master",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--webui-port",
        str(ui),
        name="master",
    )
    for n in (1, 2):
        start(
            "org.apache.spark.deploy.worker.Worker",
            master,
            "--host",
            "127.0.0.1",
            "--cores",
            "1",
            "--memory",
            "2g",
            "--webui-port",
            str(free_port()),
            "--work-dir",
            str(work / f"worker{n}"),
            name=f"worker{n}",
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:
                    if json.load(r).get("aliveworkers") == 2:
                        break
            except (OSError, ValueError):  # not up yet, or a half-started UI's non-JSON answer
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                logs = {p.name: p.read_text()[-1500:] for p in work.glob("*.log")}
                raise RuntimeError(f"standalone cluster did not come up: {logs}")
            time.sleep(0.5)
        yield master
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in procs:
            proc.wait(timeout=30)


def test_cluster_run_equals_local_run(spark, cluster, register, warehouse, job_config, tmp_path):
    if not ENV_ARCHIVE.is_file():
        pytest.fail(f"{ENV_ARCHIVE} missing: run `make package` (make test does)")
    model, _ = builders.logreg_pipeline(labelled(600))
    rows = customers(1200)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows, files=3)
    # executors load the model from the registry themselves: the shipped env must hold
    # mlflow, scikit-learn and batch_serving, not just pandas/pyarrow
    local = job_config(name, loading={"strategy": "per_partition"})
    remote = local.model_copy(
        update={"output": local.output.model_copy(update={"root": str(tmp_path / "cluster-out")})}
    )
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump(remote.model_dump(mode="json")))

    expected = run_score(spark, local, RUN_DATE).committed.path
    submit = subprocess.run(
        [
            str(BIN / "spark-submit"),
            "--master",
            cluster,
            "--archives",
            f"{ENV_ARCHIVE}#environment",
            "--conf",
            "spark.pyspark.python=./environment/bin/python",
            "--conf",
            f"spark.pyspark.driver.python={sys.executable}",
            "--conf",
            "spark.executor.memory=1g",
            "--conf",
            "spark.executor.cores=1",
            str(REPO / "jobs" / "score.py"),
            "--config",
            str(config),
            "--run-date",
            str(RUN_DATE),
        ],
        env=spark_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert submit.returncode == 0, (submit.stdout[-4000:], submit.stderr[-4000:])
    assert "1200 in -> 1200 out" in submit.stdout
    got_path = tmp_path / "cluster-out" / "predictions" / name / f"ds={RUN_DATE}"
    manifest = json.loads((got_path / "_manifest.json").read_text())
    # the work really ran on the cluster's executors, with the shipped interpreter
    assert manifest["scoring"]["python_workers"] == 2 and manifest["scoring"]["model_loads"] == 2

    columns = ["customer_id", "score", "model_name", "model_version"]
    a = spark.createDataFrame(pq.read_table(expected, columns=columns).to_pandas())
    b = spark.createDataFrame(pq.read_table(got_path, columns=columns).to_pandas())
    assert a.count() == b.count() == 1200
    assert_approx_df_equality(a, b, 1e-12, ignore_row_order=True)
