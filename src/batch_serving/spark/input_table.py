"""``input.table``: a metastore table resolved to the files the job reads.

The job reads files, not tables: both engines list a date's directory, and the run manifest
records those files. So a catalog table is resolved once per run, when the session exists, to
its location and its partition columns in directory order (``DESCRIBE TABLE EXTENDED``: one
metadata call, answered alike by a classic and a Connect session), and everything downstream
reads ``<location>/<col>=<value>/...`` as for an ``input.path``. The table must be Parquet
(a Spark ``USING parquet`` table or a Hive table ``STORED AS PARQUET``) and partitioned by the
date column. Partitions are found as Hive lays them out under the table's location; a
partition registered at a location of its own elsewhere is not followed.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession

from batch_serving.config import InputConfig, JobConfig
from batch_serving.config.paths import overlap
from batch_serving.errors import ConfigError, InputNotFoundError, StorageError, first_line

PARTITIONS_HEADER = "# Partition Information"
DETAILS_HEADER = "# Detailed Table Information"
DEFAULT_FORMAT = "yyyy-MM-dd"  # how Spark and Hive spell a DATE partition's directory


@dataclass(frozen=True)
class TableDescription:
    """What the metastore says about a table, as far as reading its files goes."""

    name: str
    kind: str  # EXTERNAL, MANAGED, VIEW
    provider: str  # parquet, hive, csv, delta ...
    serde: str
    location: str | None
    partition_columns: tuple[str, ...]
    partition_types: dict[str, str]

    @property
    def parquet(self) -> bool:
        if self.provider == "hive":
            return "parquet" in self.serde.lower()
        return self.provider == "parquet"


def resolve_input(spark: SparkSession, cfg: JobConfig) -> JobConfig:
    """``cfg`` with its ``input.table`` resolved (a ``path`` input is returned as it is)."""
    if cfg.input.table is None:
        return cfg
    table = describe_table(spark, cfg.input.table)
    location = checked_location(table, cfg.input)
    relation = overlap(cfg.output.root, location)
    if relation is not None:
        raise ConfigError(
            f"output.root {cfg.output.root} {relation} input.table {table.name} at {location}: "
            "the job must not write into (or around) the table it reads"
        )
    resolved = cfg.input.resolved(location, table.partition_columns)
    return cfg.model_copy(update={"input": resolved})


def describe_table(spark: SparkSession, name: str) -> TableDescription:
    """The table's description; a table that is not there is an InputNotFoundError naming
    it, a metastore that cannot answer a StorageError (neither with JVM text)."""
    try:
        if not spark.catalog.tableExists(name):
            raise InputNotFoundError(
                f"input.table {name} does not exist in the catalog{_databases_hint(spark, name)}"
            )
        rows = spark.sql(f"DESCRIBE TABLE EXTENDED {_quoted(name)}").collect()
    except InputNotFoundError:
        raise
    except Exception as exc:  # metastore and analysis errors arrive as Spark's exceptions
        raise StorageError(
            f"cannot describe input.table {name} in the catalog: {first_line(exc)}"
        ) from None
    return parse_description(name, [(str(r[0]).strip(), str(r[1]).strip()) for r in rows])


def parse_description(name: str, rows: list[tuple[str, str]]) -> TableDescription:
    """``DESCRIBE TABLE EXTENDED`` rows (column name, data type) as a ``TableDescription``."""
    partitions: dict[str, str] = {}
    details: dict[str, str] = {}
    section = "columns"
    for key, value in rows:
        if key in (PARTITIONS_HEADER, DETAILS_HEADER):
            section = key
        elif key and not key.startswith("#"):
            if section == PARTITIONS_HEADER:
                partitions[key] = value
            elif section == DETAILS_HEADER:
                details[key] = value
    return TableDescription(
        name=name,
        kind=details.get("Type", "").upper(),
        provider=details.get("Provider", "").lower(),
        serde=details.get("Serde Library", ""),
        location=details.get("Location"),
        partition_columns=tuple(partitions),
        partition_types=partitions,
    )


def checked_location(table: TableDescription, cfg: InputConfig) -> str:
    """The table's location, once it is known to be readable as date-partitioned Parquet;
    otherwise a ConfigError naming the table and what it is instead."""
    if table.kind == "VIEW":
        raise ConfigError(f"input.table {table.name} is a view: the job reads a table's files")
    if not table.parquet:
        kind = (
            f"a Hive table with serde {table.serde or 'unknown'}"
            if table.provider == "hive"
            else f"provider {table.provider or 'unknown'}"
        )
        raise ConfigError(f"input.table {table.name} is not a Parquet table ({kind})")
    if cfg.partition_column not in table.partition_columns:
        raise ConfigError(
            f"input.table {table.name} is not partitioned by {cfg.partition_column} "
            f"(input.partition_column); its partition columns: {list(table.partition_columns)}"
        )
    kind = table.partition_types.get(cfg.partition_column, "")
    if kind == "date" and cfg.partition_format != DEFAULT_FORMAT:
        raise ConfigError(
            f"input.table {table.name}: {cfg.partition_column} is a DATE column, whose "
            f"directories are spelt {DEFAULT_FORMAT}; input.partition_format is "
            f"{cfg.partition_format}"
        )
    if not table.location:
        raise ConfigError(f"input.table {table.name} has no location in the metastore")
    return local_or_uri(table.location)


def local_or_uri(location: str) -> str:
    """A metastore location as ``storage.location`` reads it: ``file:/x`` is the local ``/x``."""
    if location.startswith("file:"):
        rest = location.removeprefix("file:")
        return "/" + rest.lstrip("/")
    return location


def _databases_hint(spark: SparkSession, name: str) -> str:
    database = name.split(".", 1)[0]
    try:
        if not spark.catalog.databaseExists(database):
            return f" (no database {database})"
    except Exception:  # the hint is a courtesy: the message stands without it
        return ""
    return ""


def _quoted(name: str) -> str:
    return ".".join(f"`{part}`" for part in name.split("."))
