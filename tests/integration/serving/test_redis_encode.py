"""The Redis publish path's encoder (issue #12.6): the bytes it builds from Arrow columns are
exactly what the per-row writer wrote (same bucket of each id, same JSON text), checked against
``zlib.crc32`` and ``json.dumps`` here and read back from a real redis-server."""

from __future__ import annotations

import json
import math
import zlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import redis

from batch_serving.serving.readers import to_json_rows
from batch_serving.serving.records import SnapshotManifest
from batch_serving.serving.redis_encode import crc32_buckets, json_objects, key_strings
from batch_serving.serving.redis_store import BUCKET_SIZE, RedisPublisher

TRICKY_FLOATS = [0.0, -0.0, 1.0, 123.0, 1e-7, 9.99e-5, 1e-4, 0.1, 1 / 3, 5e-324, 1e9, 1.5e10]
TRICKY_FLOATS += [1e16, 1e22, 1.7976931348623157e308, -2.5e-300, math.nan, math.inf, -math.inf]
STRINGS = ["retain", 'say "hi"', "back\\slash", "ünïcödé", "tab\there", "", "line\nbreak"]


def tricky_table(rows: int, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    magnitudes = 10.0 ** rng.integers(-12, 24, rows - len(TRICKY_FLOATS))
    floats = np.concatenate([TRICKY_FLOATS, rng.random(rows - len(TRICKY_FLOATS)) * magnitudes])
    nulls = np.arange(rows) % 17 == 3
    return pa.table(
        {
            "score": pa.array(floats, mask=nulls),
            "score32": pa.array(floats.astype(np.float32)),
            "version": pa.array(rng.integers(-(2**40), 2**40, rows)),
            "flag": pa.array(rng.random(rows) < 0.5, mask=nulls),
            "action": pa.array(rng.choice(STRINGS, rows), mask=nulls),
            "member": pa.array(
                [
                    None if i % 7 == 0 else {"p": float(floats[i]), "model": STRINGS[i % 7]}
                    for i in range(rows)
                ]
            ),
        }
    )


def test_json_is_byte_identical_to_json_dumps_per_row() -> None:
    table = tricky_table(5000)
    expected = [json.dumps(row) for row in to_json_rows(table)]
    assert json_objects(table).to_pylist() == expected
    single = table.select(["score"])
    assert json_objects(single).to_pylist() == [json.dumps(r) for r in to_json_rows(single)]


def test_buckets_are_zlib_crc32_of_the_id_text() -> None:
    rng = np.random.default_rng(1)
    ints = pa.array(np.concatenate([[0, -1, 2**63 - 1, -(2**63)], rng.integers(0, 10**15, 5000)]))
    texts = pa.array(["", "a", "ünï", "x" * 70, *(f"cust-{i}" for i in range(500))])
    for keys in (ints, texts):
        as_text = key_strings(keys)
        assert as_text.to_pylist() == [str(k) for k in keys.to_pylist()]
        expected = [zlib.crc32(str(k).encode()) % 997 for k in keys.to_pylist()]
        assert crc32_buckets(as_text, 997).tolist() == expected


def test_redis_hashes_hold_what_the_per_row_writer_wrote(redis_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from batch_serving.serving import redis_store

    monkeypatch.setattr(redis_store, "WRITE_BATCH", 700)  # several batches, split buckets
    rows = 2500
    values = tricky_table(rows)
    keys = pa.array([f"id-{i}-ü" if i % 3 else str(i) for i in range(rows)])
    manifest = {
        "snapshot_id": "enc-1",
        "rows": rows,
        "key_type": "string",
        "value_columns": [*values.column_names],
        "served_columns": [c for c in values.column_names if c != "member"],
        "member_columns": ["member"],
    }
    snap = SimpleNamespace(
        snapshot_id="enc-1",
        manifest=SnapshotManifest.from_dict(manifest),
        table=values.add_column(0, "entity_id", keys),
    )
    progress: list[tuple[int, int]] = []
    db = redis_url.rsplit("/", 1)[0] + "/7"
    with RedisPublisher(db) as publisher:
        publisher.publish("enc", snap, keep=2, expire_s=60, progress=lambda *p: progress.append(p))  # type: ignore[arg-type]
    assert progress == [(700, rows), (1400, rows), (2100, rows), (rows, rows)]

    buckets = math.ceil(rows / BUCKET_SIZE)
    served = to_json_rows(values.select(manifest["served_columns"]))
    members = to_json_rows(values.select(["member"]))
    expected: dict[str, dict[str, str]] = {}
    for key, value, member in zip(keys.to_pylist(), served, members, strict=True):
        bucket = zlib.crc32(key.encode()) % buckets
        expected.setdefault(f"bs:enc:snap:enc-1:b:{bucket}", {})[key] = json.dumps(value)
        expected.setdefault(f"bs:enc:snap:enc-1:mb:{bucket}", {})[key] = json.dumps(member)
    client = redis.Redis.from_url(db, decode_responses=True)
    stored: dict[str, Any] = {k: client.hgetall(k) for k in client.keys("bs:enc:snap:enc-1:*b:*")}
    assert stored == expected
    meta = json.loads(client.get("bs:enc:snap:enc-1:meta") or "{}")
    assert meta["buckets"] == buckets and client.get("bs:enc:current") == "enc-1"
