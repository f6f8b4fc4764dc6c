"""Catalog step: register committed partitions as SQL tables (``predictions.<model>``).

A Delta table (``output.format: delta``) is registered once, ``USING DELTA LOCATION`` its
directory: its log holds the schema, the dates and the versions (``VERSION AS OF``).

The tables are external Parquet tables over the same Hive-style directories the job commits,
so registering is metadata only and idempotent: the table is created once (schema inferred
from the files), each run adds its date partition if missing and refreshes cached file lists
(a rerun replaced that directory's files). Other engines (DuckDB, Trino, pandas) read the same
directories without the metastore.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from pyspark.sql import SparkSession

from batch_serving.errors import StorageError
from batch_serving.storage import Location, spark_path
from batch_serving.storage.files import data_files
from batch_serving.tables.layout import PARTITION_COLUMN, TableLayout

log = logging.getLogger(__name__)


def table_name(database: str, model: str) -> str:
    return f"`{database}`.`{model}`"


def register_partition(
    spark: SparkSession, database: str, layout: TableLayout, run_date: dt.date
) -> str | None:
    """Create ``database.model`` if needed and add ``run_date``; returns the table name, or
    None when there is nothing to register yet (e.g. an empty quarantine)."""
    name = table_name(database, layout.model)
    partition = layout.committed_dir(run_date)  # pointer protocol: the committed run's dir
    moved = layout.protocol.catalog_location(layout, run_date)  # None: where Hive expects it
    try:
        exists, location = _existing_table(spark, database, layout.model)
        if not exists and not spark.catalog.databaseExists(database):
            spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")  # alone it logs a WARN
        if exists and location != _real(layout.table_dir):
            # the job's output root moved: re-point the (external) table, data untouched
            log.warning("table %s pointed elsewhere; re-creating it on %s", name, layout.table_dir)
            spark.sql(f"DROP TABLE {name}")
            exists = False
        if layout.protocol.table_format == "delta":  # the log has the schema and the dates
            if not exists and not data_files(partition):
                return None
            spark.sql(
                f"CREATE TABLE IF NOT EXISTS {name} USING DELTA "
                f"LOCATION {_sql_string(spark_path(layout.table_dir))}"
            )
            spark.catalog.refreshTable(name)
            log.info("registered Delta table %s (ds=%s committed)", name, run_date)
            return name
        if not exists:
            if not data_files(partition):
                return None
            schema = spark.read.parquet(spark_path(partition)).schema
            columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in schema)
            spark.sql(
                f"CREATE TABLE IF NOT EXISTS {name} ({columns}, {PARTITION_COLUMN} DATE) "
                f"USING parquet PARTITIONED BY ({PARTITION_COLUMN}) "
                f"LOCATION {_sql_string(spark_path(layout.table_dir))}"
            )
        spec = f"({PARTITION_COLUMN} = DATE'{run_date.isoformat()}')"
        if not _partition_registered(spark, database, layout.model, run_date):
            spark.sql(f"ALTER TABLE {name} ADD IF NOT EXISTS PARTITION {spec}")
        if moved is not None:  # e.g. the metastore follows the pointer to the run's directory
            spark.sql(
                f"ALTER TABLE {name} PARTITION {spec} SET LOCATION {_sql_string(spark_path(moved))}"
            )
        spark.catalog.refreshTable(name)  # REFRESH TABLE, in one call instead of a query
    except Exception as exc:  # Spark's AnalysisException and metastore errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(
            f"partition {partition} is committed, but registering it in table {name} failed: "
            f"{first}"
        ) from None
    log.info("registered %s partition ds=%s", name, run_date)
    return name


def _existing_table(spark: SparkSession, database: str, model: str) -> tuple[bool, str | None]:
    """(table exists, its location) read from the metastore through the session's external
    catalog: two metadata calls, no SQL query (DESCRIBE TABLE EXTENDED + tableExists cost
    ~40 ms a run). Where that JVM object is not reachable (not a classic session), the public
    catalog API and DESCRIBE answer the same question."""
    try:
        external = spark._jsparkSession.sharedState().externalCatalog()
        if not external.databaseExists(database) or not external.tableExists(database, model):
            return False, None
        storage = external.getTable(database, model).storage()
        uri = storage.locationUri()
        return True, _normalized(str(uri.get().toString())) if uri.isDefined() else None
    except Exception:  # no JVM objects, or a metastore error (raised as Spark's exceptions)
        if not spark.catalog.tableExists(f"{database}.{model}"):
            return False, None
        return True, _location(spark, table_name(database, model))


def _partition_registered(
    spark: SparkSession, database: str, model: str, run_date: dt.date
) -> bool:
    """True when the date's partition is already in the metastore and the table keeps no
    statistics: ``ADD IF NOT EXISTS PARTITION`` would then change nothing (it only adjusts a
    table's statistics), so a rerun skips that ~15-70 ms command. False when unsure."""
    try:
        external, jvm = spark._jsparkSession.sharedState().externalCatalog(), spark._jvm
        if jvm is None or external.getTable(database, model).stats().isDefined():
            return False
        spec = jvm.PythonUtils.toScalaMap({PARTITION_COLUMN: run_date.isoformat()})
        return bool(external.getPartitionOption(database, model, spec).isDefined())
    except Exception:  # no JVM objects, or a metastore error (raised as Spark's exceptions)
        return False  # then the ALTER runs, as it always did


def _location(spark: SparkSession, name: str) -> str | None:
    for row in spark.sql(f"DESCRIBE TABLE EXTENDED {name}").collect():
        if row["col_name"] == "Location":
            return _normalized(str(row["data_type"]))
    return None


def _normalized(value: str) -> str:
    """A table location as ``_real`` spells a table directory."""
    if "://" in value and not value.startswith("file:"):
        return value.rstrip("/")
    return str(Path(value.removeprefix("file:")).resolve())


def _real(path: Location) -> str:
    """A table directory as the metastore spells it (absolute, symlinks resolved locally)."""
    return path.resolve().spark_uri.rstrip("/")


def _sql_string(path: str) -> str:
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"
