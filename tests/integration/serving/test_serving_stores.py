"""Snapshot stores (serving/stores.py) and typed serving records (serving/records.py), without
Spark: hand-built snapshots published into an embedded root and a real redis-server."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from batch_serving.config import PublishConfig
from batch_serving.errors import PublishError, ServingStoreError
from batch_serving.serving.format import build_table, read_snapshot_manifest, write_snapshot
from batch_serving.serving.pointer import ServingLayout, read_pointer
from batch_serving.serving.records import FeatureManifest, Pointer, SnapshotHeader
from batch_serving.serving.stores import EmbeddedStore, RedisStore, open_stores

MODEL = "m1"


def build(layout: ServingLayout, snapshot_id: str, rows: int = 3) -> None:
    """A snapshot of ``rows`` ids whose scores say which snapshot they came from."""
    ids = list(range(rows))
    source = pa.table({"id": ids, "score": [float(len(snapshot_id)) + i for i in ids]})
    header = SnapshotHeader(
        snapshot_id=snapshot_id,
        model=MODEL,
        model_version=1,
        run_date="2026-11-22",
        run_id=f"run-{snapshot_id}",
        published_at="2026-11-22T00:00:00+00:00",
    )
    write_snapshot(
        build_table(source, ["id"], ["score"]), layout.snapshot_dir(MODEL, snapshot_id), header
    )


def test_factory_builds_the_configured_stores_once_in_switch_order() -> None:
    both = PublishConfig(backends=("redis", "embedded"), redis_url="redis://127.0.0.1:1/0")
    with open_stores(both) as stores:  # Redis is not reached before a store is used
        assert stores.reads_snapshot_data and stores.keeps_pointer_file
        kinds = [type(s) for s in stores._stores]  # type: ignore[attr-defined]
    assert kinds == [EmbeddedStore, RedisStore]
    with open_stores(PublishConfig(backends=("embedded",))) as stores:
        assert not stores.reads_snapshot_data and stores.keeps_pointer_file
    with open_stores(PublishConfig(backends=("redis",))) as stores:
        assert stores.reads_snapshot_data and not stores.keeps_pointer_file


def test_embedded_store_switches_keeps_and_rolls_back(tmp_path: Path) -> None:
    layout = ServingLayout(tmp_path / "serving")
    store = EmbeddedStore(PublishConfig(keep=2))

    def built(sid: str) -> str:  # publish builds each snapshot right before switching to it
        build(layout, sid, rows=4)
        return sid

    first = store.publish(layout, MODEL, built("s1"))
    again = store.publish(layout, MODEL, "s1")
    store.publish(layout, MODEL, built("s22"))
    third = store.publish(layout, MODEL, built("s333"))

    assert (first.previous, first.changed, first.rows) == (None, True, 4)
    assert (again.previous, again.changed) == ("s1", False)
    assert (third.previous, third.changed) == ("s22", True)
    assert read_pointer(layout, MODEL) == Pointer(current="s333", history=["s22"])
    assert store.kept(layout, MODEL) == ["s22", "s333"]  # s1 pruned beyond keep=2
    back = store.rollback(layout, MODEL)
    assert (back.current, back.previous, back.rows) == ("s22", "s333", 4)
    with pytest.raises(PublishError, match=r"no previous snapshot of 'm1'.*kept snapshots"):
        store.rollback(layout, MODEL)


def test_embedded_rollback_of_an_unpublished_model_names_it(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="nothing published for model 'm1'"):
        EmbeddedStore(PublishConfig()).rollback(ServingLayout(tmp_path), MODEL)


def test_redis_store_connects_on_first_use_and_names_the_url(tmp_path: Path) -> None:
    layout = ServingLayout(tmp_path)
    build(layout, "s1")
    store = RedisStore(PublishConfig(backends=("redis",), redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(ServingStoreError, match=r"Redis at redis://127.0.0.1:1/0 is unreachable"):
        store.publish(layout, MODEL, "s1")
    store.close()


def test_redis_store_publishes_rolls_back_and_lists(tmp_path: Path, redis_url: str) -> None:
    import redis

    db = redis_url.rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(db).flushdb()
    layout = ServingLayout(tmp_path)
    for sid in ("s1", "s22"):
        build(layout, sid, rows=5)
    store = RedisStore(PublishConfig(backends=("redis",), redis_url=db, keep=3))
    try:
        first = store.publish(layout, MODEL, "s1")
        second = store.publish(layout, MODEL, "s22")
        assert (first.previous, first.changed, first.rows) == (None, True, 5)
        assert (second.previous, second.changed) == ("s1", True)
        assert store.kept(layout, MODEL) == ["s1", "s22"]
        back = store.rollback(layout, MODEL)
        assert (back.current, back.previous, back.rows) == ("s1", "s22", 5)
    finally:
        store.close()
    client = redis.Redis.from_url(db, decode_responses=True)
    assert client.get(f"bs:{MODEL}:current") == "s1"
    meta = json.loads(client.get(f"bs:{MODEL}:snap:s22:meta") or "{}")
    assert meta["buckets"] == 1 and meta["run_id"] == "run-s22" and meta["rows"] == 5


def test_snapshot_manifest_keeps_exactly_the_keys_on_disk(tmp_path: Path) -> None:
    """What write_snapshot wrote is what a reader gets back and writes again: no key added
    (no null member_columns in a single-model snapshot), unknown keys carried along."""
    table = build_table(pa.table({"k": ["b", "a"], "score": [0.1, 0.2]}), ["k"], ["score"])
    write_snapshot(table, tmp_path / "s", {"snapshot_id": "s", "from_the_future": [1]})
    on_disk = json.loads((tmp_path / "s" / "_snapshot.json").read_text())

    manifest = read_snapshot_manifest(tmp_path / "s")

    assert manifest.to_dict() == on_disk
    assert "member_columns" not in on_disk and on_disk["from_the_future"] == [1]
    assert manifest.served == ["score"] and manifest.member_columns == []
    assert manifest.key_type == "string" and manifest.numpy_columns is None
    with pytest.raises(ServingStoreError, match=r"snapshot s has no \['model_version'"):
        manifest.provenance()


def test_a_feature_manifest_from_before_pinned_members_still_loads(tmp_path: Path) -> None:
    table = build_table(pa.table({"id": [1], "x": [0.5]}), ["id"], ["x"])
    old = {"snapshot_id": "features-r1", "model_uri": "models:/m1/3", "ensemble": "mean"}
    write_snapshot(table, tmp_path / "f", old)

    info = FeatureManifest.of(read_snapshot_manifest(tmp_path / "f"))

    assert info.members == [] and info.ensemble == "mean"
    assert info.model_uri == "models:/m1/3" and info.score_column == "score"


def test_an_unreadable_pointer_is_named(tmp_path: Path) -> None:
    layout = ServingLayout(tmp_path)
    layout.model_dir(MODEL).mkdir(parents=True)
    layout.pointer_path(MODEL).write_text('{"history": []}')
    with pytest.raises(ServingStoreError, match=r"unreadable snapshot pointer .*CURRENT.json"):
        read_pointer(layout, MODEL)
