"""Arrow columns -> Redis protocol bytes for a snapshot's bucket hashes, without per-row Python.

``redis_store.RedisPublisher`` writes each bucket as one ``HSET bucket id json id json ...``.
Building those commands with redis-py costs several microseconds per id (``to_pylist``,
``json.dumps``, ``crc32``, argument packing); this module builds the same bytes with Arrow
compute kernels and numpy:

* ``json_objects``: one JSON object per row, byte-identical to ``json.dumps(to_json_rows(...))``
  (float64 via Arrow's shortest round-trip digits, with the rare values Arrow formats unlike
  Python's ``repr`` - tiny, huge or integral - redone in Python; strings escaped once per
  distinct value; NaN/inf as null). Column types without a fast path (structs, maps) are
  encoded per row in Python, column by column.
* ``crc32_buckets``: ``zlib.crc32(id) % buckets`` for every id at once (table-driven CRC-32
  over the string array's bytes, one numpy pass per byte position).
* ``hset_commands``: rows sorted by bucket, one RESP ``HSET`` per bucket, as one buffer.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _crc_table() -> np.ndarray:
    """The reflected CRC-32 table (polynomial 0xEDB88320), as zlib uses."""
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table[i] = c
    return table


_CRC_TABLE = _crc_table()


def key_strings(keys: pa.Array) -> pa.StringArray:
    """Entity ids as the strings used for hash fields (``str(id)``)."""
    if pa.types.is_string(keys.type):
        return keys
    if pa.types.is_integer(keys.type):
        return pc.cast(keys, pa.string())
    return pa.array([str(k) for k in keys.to_pylist()], pa.string())


def crc32_buckets(keys: pa.StringArray, buckets: int) -> np.ndarray:
    """``zlib.crc32(key.encode()) % buckets`` per key, vectorized (uint32)."""
    keys = pc.cast(keys, pa.large_string())
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int64)[keys.offset : keys.offset + n + 1]
    data = np.frombuffer(keys.buffers()[2], dtype=np.uint8)
    lengths = np.diff(offsets)
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        c = crc[rows]
        starts = offsets[rows]
        for i in range(int(length)):
            c = _CRC_TABLE[(c ^ data[starts + i]) & 0xFF] ^ (c >> 8)
        crc[rows] = c
    crc ^= np.uint32(0xFFFFFFFF)
    return crc % np.uint32(buckets)


def json_objects(table: pa.Table) -> pa.StringArray:
    """One JSON object per row of ``table``, as ``json.dumps`` of ``to_json_rows`` writes it."""
    parts: list[Any] = []
    for i, name in enumerate(table.column_names):
        column = table.column(name).combine_chunks()
        parts.append(("{" if i == 0 else ", ") + json.dumps(name) + ": ")
        parts.append(json_values(column))
    parts.append("}")
    if table.num_columns == 0:
        return pa.array(["{}"] * table.num_rows, pa.string())
    return pc.binary_join_element_wise(*parts, "")


def json_values(column: pa.Array) -> pa.StringArray:
    """Each value of ``column`` as JSON text (null for nulls, NaN and infinities)."""
    kind = column.type
    if pa.types.is_floating(kind):
        out = _json_floats(pc.cast(column, pa.float64()))
    elif pa.types.is_integer(kind):
        out = pc.cast(column, pa.string())
    elif pa.types.is_boolean(kind):
        out = pc.if_else(column, "true", "false")
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        out = _json_strings(pc.cast(column, pa.string()))
    elif pa.types.is_dictionary(kind):
        return json_values(column.cast(kind.value_type))
    else:  # structs, maps, lists: per row, as the generic writer does
        from batch_serving.serving.readers import _json_value

        values = [json.dumps(_json_value(v)) for v in column.to_pylist()]
        return pa.array(values, pa.string())
    return pc.fill_null(out, "null")


def _json_floats(column: pa.Array) -> pa.Array:
    values = column.to_numpy(zero_copy_only=False)
    text = pc.cast(column, pa.string())
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        magnitude = np.abs(values)
        # where Arrow's text differs from Python's repr: exponent ranges and integral values
        odd = finite & ((magnitude < 1e-4) | (magnitude >= 1e9) | (values == np.floor(values)))
    if column.null_count:
        odd &= ~np.asarray(column.is_null())
        finite |= np.asarray(column.is_null())
    if odd.any():
        rows = np.flatnonzero(odd)
        fixed = [repr(float(values[r])) for r in rows]
        text = _replace_at(text, rows, fixed)
    if not finite.all():
        text = pc.if_else(pa.array(finite), text, pa.scalar(None, pa.string()))
    return text


def _json_strings(column: pa.StringArray) -> pa.Array:
    """JSON string literals: escaped once per distinct value (ids of a dictionary)."""
    encoded = column.dictionary_encode()
    literals = pa.array([json.dumps(s) for s in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(literals, encoded.indices)


def _replace_at(text: pa.Array, rows: np.ndarray, values: list[str]) -> pa.Array:
    items = text.to_pylist() if len(rows) * 4 > len(text) else None
    if items is not None:
        for r, v in zip(rows.tolist(), values, strict=True):
            items[r] = v
        return pa.array(items, pa.string())
    mask = np.zeros(len(text), dtype=bool)
    mask[rows] = True
    replacement = pa.array(values, pa.string())
    return pc.replace_with_mask(text, pa.array(mask), replacement)


def hset_commands(
    prefix: str, keys: pa.StringArray, values: pa.StringArray, buckets_of_rows: np.ndarray
) -> tuple[memoryview, int]:
    """RESP bytes of one ``HSET <prefix><bucket> key value ...`` per bucket present, rows
    assumed sorted by bucket; returns (bytes, number of commands)."""
    n = len(keys)
    if n == 0:
        return memoryview(b""), 0
    starts = np.flatnonzero(np.r_[True, buckets_of_rows[1:] != buckets_of_rows[:-1]])
    counts = np.diff(np.r_[starts, n])
    names = pc.binary_join_element_wise(
        prefix, pc.cast(pa.array(buckets_of_rows[starts]), pa.string()), ""
    )
    headers = pc.binary_join_element_wise(
        "*",
        pc.cast(pa.array(2 + 2 * counts), pa.string()),
        "\r\n$4\r\nHSET\r\n$",
        pc.cast(pc.binary_length(names), pa.string()),
        "\r\n",
        names,
        "\r\n",
        "",
    )
    # the header goes before the first row of its bucket; other rows get an empty string
    slot = np.full(n, len(headers), dtype=np.int64)
    slot[starts] = np.arange(len(headers))
    row_headers = pc.take(pa.concat_arrays([headers, pa.array([""])]), pa.array(slot))
    rows = pc.binary_join_element_wise(
        row_headers,
        "$",
        pc.cast(pc.binary_length(keys), pa.string()),
        "\r\n",
        keys,
        "\r\n$",
        pc.cast(pc.binary_length(values), pa.string()),
        "\r\n",
        values,
        "\r\n",
        "",
    )
    width = np.int64 if pa.types.is_large_string(rows.type) else np.int32
    offsets = np.frombuffer(rows.buffers()[1], dtype=width)
    start, end = int(offsets[rows.offset]), int(offsets[rows.offset + n])
    return memoryview(rows.buffers()[2])[start:end], len(starts)
