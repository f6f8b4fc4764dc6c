"""The one place that creates a SparkSession, from the job's ``spark:`` config."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pyspark import SparkConf
from pyspark.sql import SparkSession

from batch_serving.config import (
    CatalogConfig,
    JobConfig,
    SparkConfig,
    StorageConfig,
    prepare_process_env,
    running_under_spark_submit,
)
from batch_serving.spark.class_archive import archive_options
from batch_serving.spark.connectors import s3a_conf, use_storage

# Driver logging: Spark's warnings and errors, without the Hive/metastore WARN lines of every
# healthy run (see the file). Applies where the driver JVM starts here, i.e. not under
# spark-submit (there: --driver-java-options "-Dlog4j2.configurationFile=<this file's URI>").
LOG4J2_PROPERTIES = Path(__file__).with_name("log4j2.properties")
JAVA_OPTIONS = "spark.driver.extraJavaOptions"

# PySpark 4 logs every SQL/DataFrame error it raises, with the whole JVM stack trace, to these
# loggers (their own stderr handler, JSON lines); a job's errors are reported once, as one line.
QUERY_CONTEXT_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")

# Spark's connector jars (Kafka source, Delta; hadoop-aws + the AWS SDK for s3a://) that
# ``make jars`` copies into the checkout.
CONNECTOR_JARS = Path(__file__).resolve().parents[3] / "jars" / "lib"
S3A_JARS = CONNECTOR_JARS.parent / "s3a" / "lib"
SPARK_JARS = "spark.jars"
DRIVER_CLASSPATH = "spark.driver.extraClassPath"
# Settings that add up across layers (see merge_conf), with their separators.
ADDITIVE = {JAVA_OPTIONS: " ", SPARK_JARS: ",", DRIVER_CLASSPATH: os.pathsep}

# Defaults that suit batch scoring; the job config (and spark-submit --conf) can override them.
DEFAULT_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "10000",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",
    "spark.python.worker.reuse": "true",
    JAVA_OPTIONS: f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()}",
    # Local files without Hadoop's checksum layer: a ``.name.crc`` next to a data file is junk
    # to us (names starting with "." are not data, issue #12.5), and a stale one would fail
    # the dataframe engine while arrow_direct reads the same file fine.
    "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
}


def catalog_conf(catalog: CatalogConfig, metastore_dir: Path) -> dict[str, str]:
    """Hive metastore settings: a remote metastore by URI, else embedded Derby in a fixed dir
    (never the working directory, so every entry point sees the same tables)."""
    if catalog.metastore_uri:
        return {"spark.hadoop.hive.metastore.uris": catalog.metastore_uri}
    return {
        "spark.sql.warehouse.dir": str(metastore_dir / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={metastore_dir / 'metastore_db'};create=true"
        ),
        JAVA_OPTIONS: f"-Dderby.system.home={metastore_dir}",
    }


def connector_jars(conf: Mapping[str, str], lib: Path = CONNECTOR_JARS) -> dict[str, str]:
    """``spark.jars`` = the connector jars of ``lib`` (``jars/lib`` of the project checkout),
    so ``readStream.format("kafka")`` works in a console-script run without ``--jars``.
    Nothing when the job's ``spark.conf`` sets ``spark.jars`` itself (it wins) or when there is
    no such directory (an installed wheel; give the jars with spark-submit ``--jars``)."""
    if SPARK_JARS in conf or not lib.is_dir():
        return {}
    jars = sorted(str(jar) for jar in lib.glob("*.jar"))
    return {SPARK_JARS: ",".join(jars), **delta_conf(jars)} if jars else {}


def s3a_jars(conf: Mapping[str, str], master: str, lib: Path = S3A_JARS) -> dict[str, str]:
    """hadoop-aws and its AWS SDK bundle (``jars/s3a/lib``), so the dataframe engine opens
    ``s3a://``. A local master's executors run in the driver's JVM, so the driver's classpath
    serves them: as ``spark.jars`` each session would copy the 690 MB SDK bundle into its temp
    directory (measured). Other masters get them as ``spark.jars``. Nothing when the job sets
    ``spark.jars`` itself (it wins) or there is no such directory (give ``--packages``)."""
    if SPARK_JARS in conf or not lib.is_dir():
        return {}
    jars = sorted(str(jar) for jar in lib.glob("*.jar"))
    if not jars:
        return {}
    if master.startswith("local"):
        return {DRIVER_CLASSPATH: os.pathsep.join(jars)}
    return {SPARK_JARS: ",".join(jars)}


def delta_conf(jars: list[str]) -> dict[str, str]:
    """Delta Lake's SQL extension and catalog when delta-spark is among the jars, so
    ``USING DELTA`` tables and ``VERSION AS OF`` work (``output.format: delta``); the job's own
    ``spark.conf`` still wins. The log of a prediction table is small: few snapshot partitions."""
    if not any(Path(jar).name.startswith("delta-spark") for jar in jars):
        return {}
    return {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.databricks.delta.snapshotPartitions": "2",
    }


def class_archive_conf(options: str | None = None) -> dict[str, str]:
    """The driver's class-data sharing archive (``make class-archive``), when there is one:
    it cuts the JVM start's class loading; a stale one is refused by the JVM, which then starts
    as without it (see ``class_archive``)."""
    options = archive_options() if options is None else options
    return {JAVA_OPTIONS: options} if options else {}


def merge_conf(*layers: Mapping[str, str]) -> dict[str, str]:
    """Later layers win, except the driver's Java options, jars and classpath, which add up:
    our log4j2 file, the Derby home and the job's own options all reach the JVM (for a
    repeated ``-D`` the JVM keeps the last, so the job's own setting still wins), and the
    connector jars of ``jars/lib`` and ``jars/s3a/lib`` both reach the session."""
    merged: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in ADDITIVE and merged.get(key):
                value = f"{merged[key]}{ADDITIVE[key]}{value}"
            merged[key] = value
    return merged


QUICK_JIT = {JAVA_OPTIONS: "-XX:TieredStopAtLevel=1"}


def quick_jit(cfg: JobConfig, batch: bool) -> bool:
    """``spark.jit`` decided for a command: ``batch`` for ``score`` and ``backfill``, whose
    ``arrow_direct`` tasks do the reading, scoring and writing in Python (measured on the demo
    job at 200k rows, whole process: 0.76x wall with the quick tier only)."""
    if cfg.spark.jit != "auto":
        return cfg.spark.jit == "quick"
    if not batch or cfg.engine not in ("arrow_direct", "auto") or cfg.spark.remote is not None:
        return False
    if cfg.input.table is not None and cfg.input.path is None:
        # its location is known only once the session resolves it: arrow_direct unless
        # keep_last needs Spark's window (a table on a URL pyarrow cannot read is rare)
        return cfg.validation.duplicate_ids != "keep_last"
    from batch_serving.spark.engines import choose_engine

    return choose_engine(cfg) == "arrow_direct"  # auto may pick dataframe: keep_last, a URL


def local_conf(
    cfg: SparkConfig, hive: Mapping[str, str], jit_quick: bool = False
) -> dict[str, str]:
    """The settings of a session this process starts: ours, the class archive, the connector
    jars, the metastore's, the quick JIT if asked, then the job's own (which win)."""
    jars = (connector_jars(cfg.conf), s3a_jars(cfg.conf, cfg.master))
    jit = QUICK_JIT if jit_quick else {}
    return merge_conf(DEFAULT_CONF, class_archive_conf(), *jars, hive, jit, cfg.conf)


def build_session(
    cfg: SparkConfig,
    app_name: str,
    catalog: CatalogConfig | None = None,
    metastore_dir: Path | None = None,
    jit_quick: bool = False,
) -> SparkSession:
    """Local runs use ``cfg.master`` and ``cfg.conf``; under spark-submit its flags win.

    With spark-submit, settings set in code would override ``--conf``, so there we only fill
    in the runtime (``spark.sql.*``) settings that the submit command did not give. With an
    enabled ``catalog`` the session uses the Hive metastore (see ``catalog_conf``).
    """
    if cfg.remote is not None:
        return connect_session(cfg, app_name)
    settings = {**DEFAULT_CONF, **cfg.conf}
    builder = SparkSession.builder.appName(cfg.app_name or app_name)
    hive: dict[str, str] = {}
    if catalog is not None and catalog.enabled:
        assert metastore_dir is not None
        metastore_dir.mkdir(parents=True, exist_ok=True)
        hive = catalog_conf(catalog, metastore_dir)
        builder = builder.enableHiveSupport()
    if running_under_spark_submit():
        submitted = SparkConf()
        for key, value in hive.items():
            if not submitted.contains(key):
                builder = builder.config(key, value)
        prepare_process_env(worker_python=None)
        spark = builder.getOrCreate()
        submitted = spark.sparkContext.getConf()
        for key, value in settings.items():
            if key.startswith("spark.sql.") and not submitted.contains(key):
                spark.conf.set(key, value)
        return spark
    prepare_process_env(worker_python=sys.executable)
    builder = builder.master(cfg.master)
    for key, value in local_conf(cfg, hive, jit_quick).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def connect_session(cfg: SparkConfig, app_name: str) -> SparkSession:
    """A Spark Connect client of ``cfg.remote``: the server owns the master, the jars and the
    static settings (start it with ``server_conf``), so only runtime ``spark.sql.*`` settings
    are sent; the catalog is the server's (Hive when it was started with it)."""
    assert cfg.remote is not None
    prepare_process_env(worker_python=None)
    builder = SparkSession.builder.remote(cfg.remote).appName(cfg.app_name or app_name)
    for key, value in {**DEFAULT_CONF, **cfg.conf}.items():
        if key.startswith("spark.sql."):
            builder = builder.config(key, value)
    return builder.getOrCreate()


def server_conf(
    cfg: SparkConfig,
    catalog: CatalogConfig | None = None,
    metastore_dir: Path | None = None,
    storage: StorageConfig | None = None,
) -> dict[str, str]:
    """What a classic session of ``cfg`` would get (defaults, connector jars, the metastore,
    the job's conf), for a Spark Connect server that jobs with ``spark.remote`` use; with
    ``storage``, its S3A settings too (a Connect client cannot set Hadoop settings)."""
    hive: dict[str, str] = {}
    if catalog is not None and catalog.enabled:
        assert metastore_dir is not None
        metastore_dir.mkdir(parents=True, exist_ok=True)
        hive = {**catalog_conf(catalog, metastore_dir), "spark.sql.catalogImplementation": "hive"}
    s3a = s3a_conf(storage) if storage is not None else {}
    jars = s3a_jars(cfg.conf, cfg.master)
    return merge_conf(DEFAULT_CONF, connector_jars(cfg.conf), jars, s3a, hive, cfg.conf)


def job_session(
    cfg: JobConfig, role: str = "", with_catalog: bool = True, batch: bool = False
) -> SparkSession:
    """The session of a job's command (``score``, ``backfill``, ``sql``, ``stream``, the demo):
    its ``spark:`` config, app name ``batch-serving[-role]-<job>``, its SQL catalog unless
    ``with_catalog`` is off (streaming registers no tables), the job's ``storage.s3`` as S3A
    settings (``s3a_conf``), and errors reported once: our exceptions say what failed, so
    PySpark's own log record of each error (a JVM stack trace) is switched off. ``batch``:
    a scoring run (``score``, ``backfill``, the demo), for ``spark.jit: auto``."""
    _quiet_query_context_loggers()
    name = "-".join(part for part in ("batch-serving", role, cfg.job) if part)
    quick = quick_jit(cfg, batch)
    if not with_catalog:
        spark = build_session(cfg.spark, name, jit_quick=quick)
    else:
        spark = build_session(
            cfg.spark, name, catalog=cfg.catalog, metastore_dir=cfg.metastore_dir, jit_quick=quick
        )
    use_storage(spark, cfg.storage)  # s3a:// reaches the bucket pyarrow reaches
    return spark


def quiet_logs(spark: SparkSession) -> None:
    """Errors only from Spark's log4j (classic); a Connect server logs where it was started."""
    from batch_serving.spark.connect import is_connect

    if not is_connect(spark):
        spark.sparkContext.setLogLevel("ERROR")


def _quiet_query_context_loggers() -> None:
    from pyspark.logger import PySparkLogger

    for name in QUERY_CONTEXT_LOGGERS:  # PySparkLogger: pyspark passes it structured kwargs
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)
