"""Where the project, its job files and the jobs' virtualenv are, from the Airflow process's
environment (the only place the DAG code reads it): ``BATCH_SERVING_HOME`` (project root;
default: the directory above ``airflow_dags/``), ``BATCH_SERVING_CONF_DIR`` (default
``$BATCH_SERVING_HOME/conf/jobs``), ``BATCH_SERVING_VENV`` (default
``$BATCH_SERVING_HOME/.venv``) and ``BATCH_SERVING_ENV`` (an overlay name, passed as ``--env``).
"""

from __future__ import annotations

import os
from pathlib import Path

HOME = Path(os.environ.get("BATCH_SERVING_HOME", Path(__file__).resolve().parents[2]))
CONF_DIR = Path(os.environ.get("BATCH_SERVING_CONF_DIR", HOME / "conf" / "jobs"))
VENV = Path(os.environ.get("BATCH_SERVING_VENV", HOME / ".venv"))
ENV_OVERLAY = os.environ.get("BATCH_SERVING_ENV", "")
CONNECTOR_JARS = HOME / "jars" / "lib"
S3A_JARS = HOME / "jars" / "s3a" / "lib"


def run_env() -> dict[str, str]:
    """Environment of every task's command: the jobs venv first on PATH, its Python for the
    Spark driver and workers (a job's ``spark.pyspark.python`` still wins for executors)."""
    env = {
        "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYSPARK_PYTHON": str(VENV / "bin" / "python"),
        "PYSPARK_DRIVER_PYTHON": str(VENV / "bin" / "python"),
        "JAVA_HOME": os.environ.get("JAVA_HOME", ""),
    }
    return {k: v for k, v in env.items() if v}
