"""Storage primitives, at the bottom of the import graph (above ``config`` and ``errors`` only).

``location``: one ``Location`` type for local paths, object stores and HDFS (a pyarrow
filesystem + a path), with atomic writes as its methods; ``files``: which files a directory
holds as data and their Parquet footers. Everything above (quality, tables, spark, runs,
serving) reads and writes through these; nothing here imports them.
"""

from batch_serving.storage.location import (
    AnyPath,
    AtomicFile,
    Location,
    as_location,
    is_remote,
    lease_root,
    local_only,
    location,
    pyarrow_can_read,
    resolve,
    spark_path,
    spark_uri,
)

__all__ = [
    "AnyPath",
    "AtomicFile",
    "Location",
    "as_location",
    "is_remote",
    "lease_root",
    "local_only",
    "location",
    "pyarrow_can_read",
    "resolve",
    "spark_path",
    "spark_uri",
]
