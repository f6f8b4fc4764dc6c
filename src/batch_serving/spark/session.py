"""The one place that creates a SparkSession, from the job's ``spark:`` config."""

from __future__ import annotations

import sys
from pathlib import Path

from pyspark import SparkConf
from pyspark.sql import SparkSession

from batch_serving.config import (
    CatalogConfig,
    SparkConfig,
    prepare_process_env,
    running_under_spark_submit,
)

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
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={metastore_dir}",
    }


def build_session(
    cfg: SparkConfig,
    app_name: str,
    catalog: CatalogConfig | None = None,
    metastore_dir: Path | None = None,
) -> SparkSession:
    """Local runs use ``cfg.master`` and ``cfg.conf``; under spark-submit its flags win.

    With spark-submit, settings set in code would override ``--conf``, so there we only fill
    in the runtime (``spark.sql.*``) settings that the submit command did not give. With an
    enabled ``catalog`` the session uses the Hive metastore (see ``catalog_conf``).
    """
    settings = {**DEFAULT_CONF, **cfg.conf}
    builder = SparkSession.builder.appName(cfg.app_name or app_name)
    if catalog is not None and catalog.enabled:
        assert metastore_dir is not None
        metastore_dir.mkdir(parents=True, exist_ok=True)
        submitted = SparkConf()
        for key, value in catalog_conf(catalog, metastore_dir).items():
            if not submitted.contains(key):
                builder = builder.config(key, value)
        builder = builder.enableHiveSupport()
    if running_under_spark_submit():
        prepare_process_env(worker_python=None)
        spark = builder.getOrCreate()
        submitted = spark.sparkContext.getConf()
        for key, value in settings.items():
            if key.startswith("spark.sql.") and not submitted.contains(key):
                spark.conf.set(key, value)
        return spark
    prepare_process_env(worker_python=sys.executable)
    builder = builder.master(cfg.master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
