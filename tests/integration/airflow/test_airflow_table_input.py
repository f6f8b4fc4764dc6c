"""A job reading a metastore table (``input.table``), through Airflow for real: the DAG resolves
the table's date directory once (``resolve_input``: ``batch-serving resolve-input --json``, its
record in XCom) and the sensor then waits there for the marker, so a partition whose files are
there but whose loader is not done is never scored. Also what the DAG declares (task order) and
the spark-submit command Airflow builds for it (the s3a jars on the driver's classpath: a table
may be on S3, and the master is local).

Fixtures and helpers are those of ``test_airflow.py`` (one registered model per module)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import REPO, RUN_DATE, customers
from test_airflow import (  # noqa: F401  (fixtures used by name)
    DAGS,
    JOB,
    Project,
    load_dagbag,
    migrated_db,
    model_name,
    project,
    run_in_airflow_venv,
    wait_until,
)

pytestmark = pytest.mark.slow

TABLE = "default.features"
SPARK_TYPES = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "STRING"}

SUBMIT_PROBE = """
import json, sys
sys.path.insert(0, %r)
from batch_serving_airflow.dags import job_dags
task = job_dags("e2e.yaml")["score_%s"].get_task("score")
print(json.dumps(task._get_hook()._build_spark_submit_command(task.application)))
"""


def table_project(project: Callable[..., Project]) -> Project:  # noqa: F811
    """The e2e job reading ``default.features``, a Parquet table partitioned by ``ds DATE``
    over ``<root>/warehouse``, created in the job's own (Derby) metastore by ``batch-serving
    sql``; no publish, no MLflow run records (they have their own tests)."""
    sections = {
        "input": {"table": TABLE},
        "catalog": {"enabled": True},
        "tracking": {"log_runs": False},
    }
    proj = project(sections=sections, publish=False)
    schema = pa.Schema.from_pandas(customers(5), preserve_index=False)
    columns = ", ".join(f"`{f.name}` {SPARK_TYPES[f.type]}" for f in schema)
    create = (
        f"CREATE TABLE {TABLE} ({columns}, ds DATE) USING parquet PARTITIONED BY (ds) "
        f"LOCATION '{proj.root / 'warehouse'}'"
    )
    config = Path(proj.env["BATCH_SERVING_CONF_DIR"]) / "e2e.yaml"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "batch-serving"), "sql", "--config", str(config), create],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return proj


def resolved_record(proj: Project, dag_id: str) -> dict | None:
    rows = proj.query(
        "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'resolve_input' "
        "AND key = 'return_value'",
        dag_id,
    )
    if not rows:
        return None
    value = json.loads(rows[0][0])
    return json.loads(value) if isinstance(value, str) else value


def test_table_dag_resolves_its_partition_then_waits_for_the_marker_before_scoring(
    project,  # noqa: F811
) -> None:
    proj = table_project(project)
    dag_id = f"score_{JOB}"

    # What the DAG declares, and the spark-submit line Airflow builds for it (no Spark yet).
    dag = load_dagbag(proj.env)["dags"][dag_id]
    tasks = dag["tasks"]
    assert tasks["resolve_input"]["operator"] == "JsonRecordCommand"
    assert tasks["resolve_input"]["upstream"] == []
    assert tasks["wait_for_input"]["operator"] == "TablePartitionSensor"
    assert tasks["wait_for_input"]["upstream"] == ["resolve_input"]
    assert tasks["validate_input"]["upstream"] == ["wait_for_input"]
    assert tasks["score"]["upstream"] == ["validate_input"]
    command = run_in_airflow_venv(SUBMIT_PROBE % (str(DAGS), JOB), proj.env)
    (classpath,) = [a for a in command if a.startswith("spark.driver.extraClassPath=")]
    s3a = sorted((REPO / "jars" / "s3a" / "lib").glob("*.jar"))
    assert s3a and classpath.split("=", 1)[1] == os.pathsep.join(map(str, s3a))
    assert command[command.index(classpath) - 1] == "--conf"

    # A real run: the table's directory resolved once, then no scoring before the marker.
    run = proj.start_dags_test(dag_id, str(RUN_DATE))
    out = proj.outputs[dag_id]
    record = wait_until("resolve_input's record", lambda: resolved_record(proj, dag_id), 300, run)
    partition = proj.root / "warehouse" / f"ds={RUN_DATE}"
    assert record == {
        "input": TABLE,
        "run_date": str(RUN_DATE),
        "root": str(proj.root / "warehouse"),
        "partition": str(partition),
        "marker": "_SUCCESS",
    }
    wait_until("the sensor rescheduled", lambda: proj.reschedules(dag_id) >= 1, 120, run)
    proj.write_input(RUN_DATE, marker=False)  # the files land; the loader is not done
    landed = proj.reschedules(dag_id)
    wait_until("2 pokes after the files", lambda: proj.reschedules(dag_id) >= landed + 2, 60, run)
    assert proj.tasks(dag_id)["validate_input"][0] is None  # nothing ran on half an input
    (partition / "_SUCCESS").touch()
    assert run.wait(timeout=600) == 0, out.read_text()[-4000:]

    tasks_run = proj.tasks(dag_id)
    assert all(state == "success" for state, _ in tasks_run.values()), tasks_run
    assert tasks_run["resolve_input"] == ("success", 1)  # resolved once, not per poke
    assert tasks_run["wait_for_input"] == ("success", 1)
    assert f"{partition}/_SUCCESS: not yet" in out.read_text()  # it looked where the table is
    manifest = json.loads((proj.predictions / f"ds={RUN_DATE}" / "_manifest.json").read_text())
    assert manifest["output"]["rows"] == 300
