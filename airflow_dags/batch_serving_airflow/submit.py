"""What spark-submit gets from a job's ``spark:`` config (after its ``--env`` overlay).

Under spark-submit the job itself applies only the runtime ``spark.sql.*`` settings it was not
given (``spark/session.py``): everything else of ``spark.conf`` (executor sizes, the packed
environment, the queue, the Python of the executors) must be on the submit command, or it never
takes effect. So every key goes there: those the Spark provider has an argument for through
that argument (the hook reads ``deploy_mode`` and the queue to decide how to track and kill
the application), all others as ``--conf``. Plain data, no Airflow: testable anywhere.

The connector jars reach the driver as they reach a console run's session
(``spark/session.py``): ``jars/lib`` (Kafka, Delta) on ``--jars``; ``jars/s3a/lib``
(hadoop-aws, the AWS SDK bundle) on the driver's classpath for a local master of a job on S3.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_serving.config import JobConfig

# spark.conf key -> SparkSubmitOperator argument (spark-submit's own flag for the same setting)
SPARK_JARS = "spark.jars"
OPERATOR_ARGUMENTS = {
    "spark.submit.deployMode": "deploy_mode",  # --deploy-mode
    "spark.yarn.queue": "yarn_queue",  # --queue
    "spark.archives": "archives",  # --archives
    "spark.submit.pyFiles": "py_files",  # --py-files
    "spark.files": "files",  # --files
    SPARK_JARS: "jars",  # --jars
    "spark.jars.packages": "packages",  # --packages
}
JAVA_OPTIONS = "spark.driver.extraJavaOptions"
DRIVER_CLASSPATH = "spark.driver.extraClassPath"
S3_SCHEMES = frozenset({"s3", "s3a"})


@dataclass(frozen=True)
class SubmitArguments:
    """The score task's SparkSubmitOperator arguments that come from the job file."""

    name: str
    master: str
    conf: dict[str, str]
    arguments: dict[str, str] = field(default_factory=dict)

    def operator_kwargs(self) -> dict[str, Any]:
        """``conf=``, ``name=`` and the mapped arguments, as SparkSubmitOperator takes them."""
        return {"name": self.name, "conf": dict(self.conf), **self.arguments}


def submit_arguments(
    cfg: JobConfig, driver_java_options: str, connector_jars: Path, s3a_jars: Path | None = None
) -> SubmitArguments:
    """The job's ``spark:`` section as spark-submit arguments.

    ``driver_java_options`` (our log4j2 file) comes first in the driver's Java options, so a
    job's own ``-D`` of the same property still wins (the JVM keeps the last). The connector
    jars (``jars/lib/*.jar``: Kafka, Delta) go on ``--jars`` as a console-script run puts them
    on ``spark.jars``, unless the job sets ``spark.jars`` itself; ``s3a_jars`` per
    ``s3a_classpath``.
    """
    conf = {**dict(cfg.spark.conf), **(s3a_classpath(cfg, s3a_jars) if s3a_jars else {})}
    own_options = conf.pop(JAVA_OPTIONS, "")
    conf[JAVA_OPTIONS] = " ".join(filter(None, [driver_java_options, own_options]))
    arguments = {arg: conf.pop(key) for key, arg in OPERATOR_ARGUMENTS.items() if key in conf}
    if "jars" not in arguments and (jars := jar_list(connector_jars)):
        arguments["jars"] = jars
    return SubmitArguments(
        name=cfg.spark.app_name or f"batch-serving-{cfg.job}",
        master=cfg.spark.master,
        conf=conf,
        arguments=arguments,
    )


def jar_list(lib: Path, separator: str = ",") -> str:
    """``a.jar,b.jar`` of the directory (sorted); empty without one (an installed wheel)."""
    jars = sorted(str(jar) for jar in lib.glob("*.jar")) if lib.is_dir() else []
    return separator.join(jars)


def s3a_classpath(cfg: JobConfig, lib: Path) -> dict[str, str]:
    """``spark.driver.extraClassPath`` = the jars of ``lib`` (``jars/s3a/lib``: hadoop-aws and
    its AWS SDK bundle), so that the dataframe engine opens ``s3a://``, as a console run of a
    local master gets them (``spark.session.s3a_jars``): its executors share the driver's JVM,
    and as ``--jars`` the 690 MB SDK bundle would be copied for every run. Only for a job that
    reads or writes S3 (an ``input.table``'s location is known only when the run resolves it,
    so a table input counts) with a local ``spark.master``. Nothing when the job sets
    ``spark.jars`` or ``spark.driver.extraClassPath`` itself (its own wins) or there is no such
    directory; another master gets the jars from the job's ``spark.jars``/``spark.jars.packages``.
    """
    own = cfg.spark.conf
    if SPARK_JARS in own or DRIVER_CLASSPATH in own or not cfg.spark.master.startswith("local"):
        return {}
    if not uses_s3(cfg):
        return {}
    jars = jar_list(lib, os.pathsep)
    return {DRIVER_CLASSPATH: jars} if jars else {}


def uses_s3(cfg: JobConfig) -> bool:
    """Whether the job's input or output may be on S3 (a table input: maybe, see above)."""
    if cfg.input.table is not None:
        return True
    locations = [str(cfg.input.path), cfg.output.root]
    return any(uri.partition("://")[0].lower() in S3_SCHEMES for uri in locations)


def master_mismatch(submit: SubmitArguments, connection_master: str) -> str | None:
    """A warning when the Spark connection's master (spark-submit's ``--master``, which wins)
    is not the job's ``spark.master``: the job file then does not say where it runs."""
    if connection_master == submit.master:
        return None
    return (
        f"spark-submit runs on the Spark connection's master {connection_master!r}, not the "
        f"job's spark.master {submit.master!r}: set the connection (schedule.spark_conn_id) "
        "or the job file so that they agree"
    )
