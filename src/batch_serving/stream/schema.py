"""The events' columns, from the ``stream.columns`` DDL, as Arrow types.

A small parser of flat Spark DDL (``name TYPE, ...``) without a JVM: the lookup API validates
posted rows against it, and the stream hands the same string to Spark.
"""

from __future__ import annotations

import re

import pyarrow as pa

from batch_serving.errors import ConfigError

_TYPES: dict[str, pa.DataType] = {
    "TINYINT": pa.int8(),
    "BYTE": pa.int8(),
    "SMALLINT": pa.int16(),
    "SHORT": pa.int16(),
    "INT": pa.int32(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "LONG": pa.int64(),
    "FLOAT": pa.float32(),
    "REAL": pa.float32(),
    "DOUBLE": pa.float64(),
    "STRING": pa.string(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
}
_COLUMN = re.compile(r"^\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s+([A-Za-z]+)\s*$")


def parse_ddl(ddl: str) -> pa.Schema:
    """``"id BIGINT, x DOUBLE"`` -> Arrow schema; refuses nested or unknown types by name."""
    fields = []
    for part in ddl.split(","):
        match = _COLUMN.match(part)
        if match is None:
            raise ConfigError(
                f"stream.columns: cannot parse column {part.strip()!r} (want `name TYPE`)"
            )
        name, kind = match.group(1), match.group(2).upper()
        if kind not in _TYPES:
            raise ConfigError(
                f"stream.columns: column {name} has unsupported type {kind}; "
                f"supported: {', '.join(sorted(_TYPES))}"
            )
        fields.append(pa.field(name, _TYPES[kind]))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ConfigError(f"stream.columns names a column twice: {names}")
    return pa.schema(fields)
