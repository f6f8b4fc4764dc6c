"""Publish: committed partition -> sorted Arrow snapshot + atomic pointer; rollback; refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import REPO, Scored

from batch_serving.errors import PublishError
from batch_serving.serving.format import KEY, build_table, file_sha256, write_snapshot
from batch_serving.serving.pointer import ServingLayout, read_pointer
from batch_serving.serving.publish import publish, rollback
from batch_serving.serving.readers import Snapshot
from batch_serving.storage.files import data_files
from batch_serving.tables.manifest import MANIFEST_NAME


def pointer(serving: Path, model: str = "served") -> dict:
    found = read_pointer(ServingLayout(serving), model)
    assert found is not None
    return found.to_dict()


def test_publish_writes_sorted_snapshot_equal_to_partition(scored: Scored, tmp_path: Path) -> None:
    cfg = scored.config(tmp_path / "serving")
    day = scored.dates[1]

    done = publish(cfg, day)

    partition = pq.read_table(Path(cfg.output.root) / "predictions" / "served" / f"ds={day}")
    with pa.memory_map(str(done.path / "predictions.arrow")) as source:
        table = ipc.open_file(source).read_all()
    keys = table.column(KEY).to_pylist()
    assert keys == sorted(partition.column("customer_id").to_pylist())
    assert table.column_names == [KEY, "score"]
    assert dict(zip(keys, table.column("score").to_pylist(), strict=True)) == pytest.approx(
        scored.expected[day], abs=1e-12
    )
    manifest = json.loads((done.path / "_snapshot.json").read_text())
    assert manifest["rows"] == 500 and manifest["run_date"] == str(day)
    assert manifest["sha256"] == file_sha256(done.path / "predictions.arrow")
    assert manifest["model"] == "served" and manifest["model_version"] >= 1
    assert "member_columns" not in manifest and "served_columns" not in manifest  # single model
    assert pointer(cfg.serving_root) == {"current": done.snapshot_id, "history": []}
    assert done.changed and done.previous is None


def test_republish_is_a_noop(scored: Scored, tmp_path: Path) -> None:
    cfg = scored.config(tmp_path / "serving")
    first = publish(cfg, scored.dates[0])
    before = (first.path / "predictions.arrow").stat().st_mtime_ns

    again = publish(cfg, scored.dates[0])

    assert not again.changed and again.snapshot_id == first.snapshot_id
    assert (first.path / "predictions.arrow").stat().st_mtime_ns == before
    assert pointer(cfg.serving_root)["history"] == []


def test_rollback_returns_to_previous_snapshot_then_refuses(scored: Scored, tmp_path: Path) -> None:
    cfg = scored.config(tmp_path / "serving")
    old = publish(cfg, scored.dates[0])
    new = publish(cfg, scored.dates[1])
    assert pointer(cfg.serving_root) == {"current": new.snapshot_id, "history": [old.snapshot_id]}

    back = rollback(cfg)

    assert (back.snapshot_id, back.previous) == (old.snapshot_id, new.snapshot_id)
    assert pointer(cfg.serving_root) == {"current": old.snapshot_id, "history": []}
    with pytest.raises(PublishError, match="no previous snapshot of 'served'") as info:
        rollback(cfg)
    assert info.value.exit_code == 8
    assert pointer(cfg.serving_root)["current"] == old.snapshot_id


def test_keep_limits_retained_snapshots(scored: Scored, tmp_path: Path) -> None:
    cfg = scored.config(tmp_path / "serving", keep=1)
    first = publish(cfg, scored.dates[0])
    second = publish(cfg, scored.dates[1])

    kept = sorted(p.name for p in (cfg.serving_root / "served" / "snapshots").iterdir())
    assert kept == [second.snapshot_id] and not first.path.exists()
    with pytest.raises(PublishError, match="no previous snapshot"):
        rollback(cfg)


@pytest.fixture
def copied(scored: Scored, tmp_path: Path) -> tuple[Scored, Path]:
    """A private copy of the scored output, so a test may damage its partitions."""
    out = tmp_path / "out"
    shutil.copytree(scored.cfg.output.root, out)
    data = scored.cfg.model_dump(mode="json")
    data["output"]["root"] = str(out)
    data["publish"]["root"] = str(tmp_path / "serving")
    from batch_serving.config import JobConfig

    cfg = JobConfig.model_validate(data)
    return Scored(cfg=cfg, dates=scored.dates, expected=scored.expected), out


def _damage_manifest(partition: Path) -> None:
    (partition / MANIFEST_NAME).unlink()


def _fail_validation(partition: Path) -> None:
    manifest = json.loads((partition / MANIFEST_NAME).read_text())
    manifest["validation"] = {"output": {"success": False, "checked": 2, "warnings": []}}
    (partition / MANIFEST_NAME).write_text(json.dumps(manifest))


def _drop_a_file(partition: Path) -> None:
    data_files(partition)[0].unlink()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_damage_manifest, "has no committed _manifest.json"),
        (_fail_validation, r"failed validation \(output\)"),
        (_drop_a_file, "but its manifest recorded 500"),
    ],
)
def test_publish_refuses_unvalidated_partition_and_keeps_current(
    copied: tuple[Scored, Path], damage, message: str
) -> None:
    world, out = copied
    good = publish(world.cfg, world.dates[0])
    damage(out / "predictions" / "served" / f"ds={world.dates[1]}")

    with pytest.raises(PublishError, match=message) as info:
        publish(world.cfg, world.dates[1])

    assert info.value.exit_code == 8
    assert pointer(world.cfg.serving_root) == {"current": good.snapshot_id, "history": []}
    assert [p.name for p in (world.cfg.serving_root / "served" / "snapshots").iterdir()] == [
        good.snapshot_id
    ]


def test_publish_cli_exit_codes(scored: Scored, tmp_path: Path) -> None:
    cfg = scored.config(tmp_path / "serving")
    conf = tmp_path / "job.yaml"
    conf.write_text(json.dumps(cfg.model_dump(mode="json")))  # JSON is YAML

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO / "jobs" / "publish.py"), "--config", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = run("--run-date", str(scored.dates[1]))
    assert ok.returncode == 0, ok.stderr
    assert "published served snapshot" in ok.stdout and "(500 ids)" in ok.stdout
    missing = run("--run-date", "2020-01-01")
    assert missing.returncode == 8 and "no committed partition" in missing.stderr
    no_back = run("--rollback")
    assert no_back.returncode == 8 and "no previous snapshot" in no_back.stderr
    bad = run("--rollback", "--run-date", str(scored.dates[0]))
    assert bad.returncode == 2 and "--rollback takes no --run-date" in bad.stderr


def test_duplicate_ids_are_refused() -> None:
    source = pa.table({"id": [3, 1, 3], "score": [0.1, 0.2, 0.3]})
    with pytest.raises(PublishError, match=r"1 duplicate entity ids \(e.g. 3\)"):
        build_table(source, ["id"], ["score"])


def test_string_and_composite_keys_are_searchable(tmp_path: Path) -> None:
    source = pa.table(
        {
            "region": ["eu", "us", "eu", "us"],
            "account": ["b", "a", "a", "c"],
            "score": [0.1, 0.2, 0.3, 0.4],
            "probabilities": pa.array(
                [[("x", 0.5)], [("x", 0.25)], [("x", 1.0)], [("x", float("nan"))]],
                pa.map_(pa.string(), pa.float64()),
            ),
        }
    )
    table = build_table(source, ["region", "account"], ["score", "probabilities"])
    write_snapshot(table, tmp_path / "snap", {"snapshot_id": "s1"})
    snap = Snapshot(tmp_path / "snap")

    assert table.column(KEY).to_pylist() == ["eu|a", "eu|b", "us|a", "us|c"]
    assert snap.lookup(["us|a", "nope", "eu|a", "us|c"]) == [
        {"score": 0.2, "probabilities": {"x": 0.25}},
        None,
        {"score": 0.3, "probabilities": {"x": 1.0}},
        {"score": 0.4, "probabilities": {"x": None}},  # NaN is not JSON: null
    ]
    many = [f"eu|{c}" for c in "abz"] * 5  # past the scalar path: take() + to_pylist()
    assert snap.lookup(many)[:3] == [
        {"score": 0.3, "probabilities": {"x": 1.0}},
        {"score": 0.1, "probabilities": {"x": 0.5}},
        None,
    ]


def test_corrupt_snapshot_is_refused_by_checksum(scored: Scored, tmp_path: Path) -> None:
    from batch_serving.errors import ServingStoreError

    cfg = scored.config(tmp_path / "serving")
    done = publish(cfg, scored.dates[0])
    data = done.path / "predictions.arrow"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))

    with pytest.raises(ServingStoreError, match="does not match its sha256"):
        Snapshot(done.path)


def test_an_older_date_does_not_replace_a_newer_current_snapshot(
    scored: Scored, tmp_path: Path
) -> None:
    cfg = scored.config(tmp_path / "serving")
    newer = publish(cfg, scored.dates[1])

    backfilled = publish(cfg, scored.dates[0])  # e.g. a backfill publishing as it goes

    assert not backfilled.changed and "newer than" in (backfilled.skipped_reason or "")
    assert pointer(cfg.serving_root)["current"] == newer.snapshot_id
    forced = publish(cfg, scored.dates[0], allow_older=True)
    assert forced.changed and pointer(cfg.serving_root)["current"] == forced.snapshot_id


def test_numpy_mapped_reader_answers_like_the_arrow_reader(scored: Scored, tmp_path: Path) -> None:
    import random

    from batch_serving.serving.readers import MappedSnapshot, open_snapshot

    done = publish(scored.config(tmp_path / "serving"), scored.dates[1])
    arrow, mapped = Snapshot(done.path), open_snapshot(done.path)
    assert isinstance(mapped, MappedSnapshot)  # int64 ids + a double score: numpy layout
    rng = random.Random(5)
    for size in (1, 5, 8, 9, 64):
        keys = [rng.randrange(-3, 520) for _ in range(size)]
        assert mapped.lookup(keys) == arrow.lookup(keys)
    assert mapped.lookup([7])[0] == {"score": pytest.approx(scored.expected[scored.dates[1]][7])}


def test_string_keyed_snapshots_have_no_numpy_layout(tmp_path: Path) -> None:
    from batch_serving.serving.readers import open_snapshot

    table = build_table(pa.table({"k": ["b", "a"], "score": [0.1, 0.2]}), ["k"], ["score"])
    manifest = write_snapshot(table, tmp_path / "s", {"snapshot_id": "s"})
    assert manifest.numpy_columns is None
    assert isinstance(open_snapshot(tmp_path / "s"), Snapshot)


def test_member_structs_are_answered_on_request_as_json_objects(tmp_path: Path) -> None:
    """Member structs (a map inside, NaN, a failed shadow's null) sit beside the served columns;
    a lookup answers them only when asked, as plain JSON-ready objects."""
    from batch_serving.errors import PublishError
    from batch_serving.serving.readers import open_snapshot

    probabilities = pa.map_(pa.string(), pa.float64())
    member = pa.struct([("probabilities", probabilities), ("model_version", pa.int64())])
    shadow = pa.struct([("score", pa.float64()), ("action", pa.string())])
    source = pa.table(
        {
            "id": [2, 1],
            "score": [0.75, float("nan")],
            "action": ["block", "allow"],
            "champion": pa.array(
                [
                    {"probabilities": [("a", 0.25), ("b", 0.75)], "model_version": 3},
                    {"probabilities": [("a", float("inf")), ("b", 0.5)], "model_version": 3},
                ],
                member,
            ),
            "challenger": pa.array([{"score": float("nan"), "action": "review"}, None], shadow),
        }
    )
    table = build_table(source, ["id"], ["score", "action", "champion", "challenger"])
    with pytest.raises(PublishError, match=r"missing member columns \['nope'\]; present"):
        write_snapshot(table, tmp_path / "bad", {"snapshot_id": "s"}, member_columns=["nope"])
    manifest = write_snapshot(
        table, tmp_path / "s", {"snapshot_id": "s"}, member_columns=["champion", "challenger"]
    )
    assert manifest.served_columns == ["score", "action"]
    assert manifest.member_columns == ["champion", "challenger"]
    snap = open_snapshot(tmp_path / "s")
    assert isinstance(snap, Snapshot) and manifest.numpy_columns is None

    assert snap.lookup([1, 2]) == [
        {"score": None, "action": "allow"},
        {"score": 0.75, "action": "block"},
    ]
    full = [
        {
            "score": None,
            "action": "allow",
            "champion": {"probabilities": {"a": None, "b": 0.5}, "model_version": 3},
            "challenger": None,
        },
        {
            "score": 0.75,
            "action": "block",
            "champion": {"probabilities": {"a": 0.25, "b": 0.75}, "model_version": 3},
            "challenger": {"score": None, "action": "review"},
        },
    ]
    assert snap.lookup([1, 2, 9], members=True) == [*full, None]
    many = [1, 2, 9] * 4  # past the scalar path: take() + to_pylist()
    assert snap.lookup(many, members=True) == [*full, None] * 4
    assert (
        snap.lookup(many)
        == [{"score": None, "action": "allow"}, {"score": 0.75, "action": "block"}, None] * 4
    )
