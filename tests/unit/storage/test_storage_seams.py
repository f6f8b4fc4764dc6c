"""#27.2/#27.3: one ``Location`` type for every filesystem, atomic writes as its methods, and the
commit protocols behind one interface, chosen once from the output root (no Spark here)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_serving.config import StorageConfig
from batch_serving.errors import StorageError
from batch_serving.storage import Location, as_location, location
from batch_serving.storage.files import count_rows, data_files
from batch_serving.tables.commit import RenameSwap, commit, discard, recover
from batch_serving.tables.file_lease import FileLeases
from batch_serving.tables.layout import commit_protocol, predictions_layout
from batch_serving.tables.manifest import RunManifest, write_manifest
from batch_serving.tables.object_commit import PointerCommit
from batch_serving.tables.object_lease import ObjectLeases

DAY = dt.date(2026, 11, 22)


def manifest(run_id: str, rows: int) -> RunManifest:
    section = {"path": "x", "rows": rows}
    return RunManifest.model_validate(
        {
            "job": "j",
            "run_id": run_id,
            "run_date": DAY.isoformat(),
            "started_at": "2026-11-22T00:00:00+00:00",
            "config_digest": "0",
            "model": {
                "name": "m",
                "version": 1,
                "uri": "u",
                "artifact_uri": "a",
                "registry_uri": "r",
            },
            "scoring": {
                "engine": "arrow_direct",
                "kind": "sklearn",
                "features": ["id"],
                "output_columns": ["score"],
                "delivery": "broadcast",
                "artifact_mb": 0.1,
                "model_loads": 1,
                "python_workers": 1,
            },
            "input": section,
            "quarantine": {**section, "max_bad_rows": 0},
            "output": {**section, "files": 1},
            "versions": {},
        }
    )


def stage(directory: Location, rows: int, run_id: str) -> Location:
    """A staged partition as a run leaves it: data files and its manifest."""
    directory.mkdir()
    pq.write_table(pa.table({"id": list(range(rows))}), directory / "part-00000.parquet")
    write_manifest(directory, manifest(run_id, rows))
    return directory


def test_local_paths_are_locations_that_go_where_a_path_goes(tmp_path: Path) -> None:
    root = location(str(tmp_path))
    assert root == as_location(tmp_path) and root.is_local and root.kind == "local"
    assert os.fspath(root / "a") == str(tmp_path / "a") and str(root / "a") == str(tmp_path / "a")
    assert location(f"file://{tmp_path}/x").as_local() == tmp_path / "x"
    remote = location("s3://bucket/out", StorageConfig())
    assert remote.as_local() is None and not remote.renames_directories
    with pytest.raises(StorageError, match=r"the run report needs a local path; s3://bucket/out"):
        remote.local_path("the run report")
    with pytest.raises(StorageError, match="s3://bucket/out"):
        os.fspath(remote)


def test_atomic_write_replaces_whole_and_a_failed_one_leaves_the_old_file(
    tmp_path: Path,
) -> None:
    target = location(str(tmp_path)) / "sub" / "record.json"
    target.write_atomic(b"first")
    target.write_atomic(b"second")
    assert target.read_text() == "second"
    with pytest.raises(RuntimeError), target.atomic_file() as out:
        with out.fs.open_output_stream(out.path) as fh:
            fh.write(b"half")
        assert out.path != target.path  # written beside the target, not over it
        raise RuntimeError("the writer died")
    assert target.read_text() == "second"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["record.json"]


def test_data_files_skip_underscore_and_dot_names_at_any_depth(tmp_path: Path) -> None:
    for name in ("b.parquet", "a.parquet", "_SUCCESS", ".a.crc", "_tmp/x.parquet", "d/c.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = data_files(tmp_path)
    assert [f.relative_to(as_location(tmp_path)).as_posix() for f in found] == [
        "a.parquet",
        "b.parquet",
        "d/c.parquet",
    ]
    assert all(isinstance(f, Location) for f in found)


def test_protocol_is_chosen_once_from_the_output_root(tmp_path: Path) -> None:
    assert isinstance(predictions_layout(str(tmp_path), "m").protocol, RenameSwap)
    forced = StorageConfig(commit="pointer")
    assert isinstance(predictions_layout(str(tmp_path), "m", forced).protocol, PointerCommit)
    s3 = location("s3://bucket/out", StorageConfig())
    assert isinstance(commit_protocol(s3, StorageConfig()), PointerCommit)
    assert isinstance(commit_protocol(s3, StorageConfig(commit="swap")), RenameSwap)
    # the format is given: with None the layout would look for a _delta_log in the bucket
    remote = predictions_layout(
        "s3://bucket/out", "m", StorageConfig(lease_dir=str(tmp_path)), "parquet"
    )
    assert isinstance(remote.protocol, PointerCommit)
    assert isinstance(remote.leases, FileLeases) and remote.leases.root.is_relative_to(tmp_path)
    # no lease_dir: the leases are objects on the bucket, beside the output
    on_bucket = predictions_layout("s3://bucket/out", "m", StorageConfig(), "parquet")
    assert isinstance(on_bucket.leases, ObjectLeases)
    assert on_bucket.leases.objects.uri(on_bucket.leases.key("predictions", "m", "ds=1")) == (
        "s3://bucket/out/_leases/predictions/m/ds=1.json"
    )
    local = predictions_layout(str(tmp_path / "out"), "m", StorageConfig(), "parquet")
    assert local.lease_store == FileLeases(tmp_path / "out")


@pytest.mark.parametrize("mode", ["swap", "pointer"])
def test_both_protocols_answer_the_same_calls(tmp_path: Path, mode: str) -> None:
    layout = predictions_layout(str(tmp_path / "out"), "m", StorageConfig(commit=mode))
    first = commit(layout, DAY, stage(layout.staging_for(DAY, "r1"), 3, "r1"), "r1")
    assert (first.rows, first.files, first.version) == (3, 1, None)
    assert first.path == layout.committed_dir(DAY) and count_rows(first.path) == 3
    assert layout.current_run_id(DAY) == "r1" and layout.committed_dates() == [DAY.isoformat()]

    second_staged = stage(layout.staging_for(DAY, "r2"), 5, "r2")
    failed_staged = stage(layout.staging_for(DAY, "r3"), 7, "r3")
    second = commit(layout, DAY, second_staged, "r2")
    discard(layout, second_staged)  # a successful run's leftovers: the commit stays
    discard(layout, failed_staged)  # a failed run's staging goes
    assert not failed_staged.exists()
    assert layout.current_run_id(DAY) == "r2" and count_rows(layout.committed_dir(DAY)) == 5
    assert second.path == layout.committed_dir(DAY)
    assert recover(layout, DAY) is False

    where = layout.protocol.catalog_location(layout, DAY)
    if mode == "swap":
        assert where is None  # the Hive default: <table>/ds=<date>
        assert second.path == layout.partition_dir(DAY)
    else:
        assert where == layout.partition_dir(DAY) / "_runs" / "r2"
