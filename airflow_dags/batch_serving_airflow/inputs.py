"""Is a date's input partition complete? The one place that says where the input sensor looks.

A partition is complete when its marker (``schedule.input_marker``, ``_SUCCESS`` by default:
Spark and most warehouse loaders write it last) is there; with ``input_marker: null``, when it
holds a Parquet file (which fires on the first file of a partition still being written: only
for inputs written in one atomic step). Local paths and object stores (``s3://``, ``gs://``,
``abfs://``, ``hdfs://``) go through ``batch_serving.storage`` with the job's own
``storage:`` settings, so an S3 URI is looked up on S3, never turned into a local path. Plain
pyarrow, no Airflow: testable anywhere.

An ``input.table`` has no directory before the metastore resolves it (a Spark session, which
Airflow's environment has none of): the DAG's ``resolve_input`` task (``batch-serving
resolve-input``) resolves it once, and its record's ``partition`` is handed in here as
``partition``; the marker rule is the same.
"""

from __future__ import annotations

import datetime as dt
import logging

from batch_serving.config import JobConfig
from batch_serving.errors import StorageError
from batch_serving.storage.location import AnyPath, resolve
from batch_serving.tables.inputs import partition_path, spelt_partition_path

log = logging.getLogger("batch_serving.airflow")


def partition_uri(cfg: JobConfig, ds: str) -> str:
    """The date's partition directory, as the job reads it (``tables.inputs.partition_path``:
    its date format and partition filter); ``ds`` a rendered date, or a template for docs."""
    try:
        return partition_path(cfg.input, dt.date.fromisoformat(ds))
    except ValueError:  # "{{ ds }}" in a task's doc: the directory's pattern
        if cfg.input.partition_format == "yyyy-MM-dd":
            return spelt_partition_path(cfg.input, ds)
        return spelt_partition_path(cfg.input, f"<{ds} as {cfg.input.partition_format}>")


def awaited(cfg: JobConfig, ds: str, partition: str | None = None) -> str:
    """What the sensor waits for, for logs and docs: the marker, or the partition's Parquet.
    ``partition``: the resolved directory of an ``input.table`` (before it is known, the
    table's name stands in for it)."""
    if partition is None and cfg.input.table is not None:
        partition = f"<partition {ds} of input.table {cfg.input.table}, from resolve-input>"
    marker = cfg.schedule.input_marker
    return f"{partition or partition_uri(cfg, ds)}/{marker or '*.parquet'}"


def partition_ready(cfg: JobConfig, ds: str, partition: str | None = None) -> bool:
    """True once the date's marker exists (or, without a marker, a Parquet file does).

    ``partition``: the directory of an ``input.table``'s date as ``resolve-input`` printed it
    (required for a table: without it ``partition_uri`` raises ConfigError, as the table is
    not resolved). A storage error (endpoint down, no permission) is logged and reads as "not
    yet": the sensor pokes again and fails at its timeout, naming what it waited for.
    """
    dt.date.fromisoformat(ds)  # a rendered date, never a template or a glob
    directory = partition or partition_uri(cfg, ds)
    try:
        found = resolve(directory, cfg.storage)
        marker = cfg.schedule.input_marker
        if marker is not None:
            return (found / marker).is_file()
        return found.is_dir() and _has_parquet(found)
    except (OSError, StorageError) as error:
        log.warning("cannot look at %s yet: %s", awaited(cfg, ds, partition), error)
        return False


def _has_parquet(partition: AnyPath) -> bool:
    return any(p.name.endswith(".parquet") and p.is_file() for p in partition.iterdir())
