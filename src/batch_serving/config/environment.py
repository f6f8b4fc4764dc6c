"""The only module that reads or sets ``os.environ`` directly.

Some settings reach libraries only through the process environment (Spark's worker Python,
MLflow's progress bars) and spark-submit announces itself only there; keeping those reads and
writes here makes every environment dependency of the project visible in one file.
(``ServeSettings`` reads ``BATCH_SERVING_*`` through pydantic-settings, see ``serve.py``.)
"""

from __future__ import annotations

import os


def running_under_spark_submit() -> bool:
    """spark-submit launches Python with a gateway port; its --master must then win."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def prepare_process_env(worker_python: str | None) -> None:
    """Process-wide settings that libraries only take from the environment.

    Python workers use ``$PYSPARK_PYTHON`` (not a Spark conf), so local runs default it to our
    interpreter; MLflow's per-file download progress bars would flood nightly job logs.
    """
    if worker_python is not None:
        os.environ.setdefault("PYSPARK_PYTHON", worker_python)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def current_user() -> str:
    """Who runs this process, recorded as the actor of a promotion or rollback when none is
    given. ``getpass.getuser`` reads LOGNAME/USER/LNAME/USERNAME before the password database,
    so it lives here; a user with neither (some containers) is ``unknown``, not a crash."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def prometheus_multiproc_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR``: set, the lookup API's workers share their counters.

    prometheus_client itself reads this variable once, when it is first imported, to write
    every metric value to files in that directory; so it must be in the server's environment
    before it starts (uvicorn's workers inherit it), not set by code later.
    """
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
