"""#23.2: a writer killed (SIGKILL) at any point of a Delta commit leaves readers the previous
version or the new one, never a mix; a rerun then commits one new version (no Spark here: the
commit is the protocol's, run in a child process that kills itself at the chosen point). On a
local disk and on S3 (moto on loopback), where the log on the bucket is the commit."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_delta_protocol import stage

from batch_serving.config import StorageConfig
from batch_serving.storage import location
from batch_serving.storage.files import count_rows
from batch_serving.tables.commit import commit, recover
from batch_serving.tables.delta_commit import committed_version, open_table
from batch_serving.tables.layout import predictions_layout
from batch_serving.tables.manifest import read_manifest

DAY = dt.date(2026, 11, 22)

CHILD = textwrap.dedent(
    """
    import datetime as dt, os, signal, sys
    from unittest import mock
    from deltalake import DeltaTable
    from batch_serving.config import StorageConfig
    from batch_serving.tables import delta_commit
    from batch_serving.tables.commit import commit
    from batch_serving.tables.layout import predictions_layout
    from test_delta_protocol import stage

    root, point = sys.argv[1], sys.argv[2]
    day = dt.date(2026, 11, 22)
    storage = StorageConfig.model_validate_json(sys.argv[3])  # the parent's storage: section
    layout = predictions_layout(root, "m", storage, "delta")
    staged = stage(layout.staging_for(day, "r2"), [10, 11, 12, 13], "r2")

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    target = {
        "before_transaction": (DeltaTable, "create_write_transaction"),
        "after_transaction": (delta_commit, "_record_version"),
    }[point]
    with mock.patch.object(*target, side_effect=die):
        commit(layout, day, staged, "r2")
    """
)


def where(request: pytest.FixtureRequest, tmp_path: Path, store: str) -> tuple[str, dict[str, Any]]:
    """The output root and ``storage:`` section: a local directory, or a fresh bucket on the
    session's moto server (started only when an S3 case runs)."""
    if store == "local":
        return str(tmp_path / "out"), {}
    storage: dict[str, Any] = request.getfixturevalue("s3").storage
    bucket = f"bs-{uuid.uuid4().hex[:12]}"
    location(f"s3://{bucket}", StorageConfig.model_validate(storage)).mkdir()
    return f"s3://{bucket}/out", storage


@pytest.mark.parametrize("store", ["local", "s3"])
@pytest.mark.parametrize(
    ("point", "survivor", "version"),
    [("before_transaction", "r1", 0), ("after_transaction", "r2", 1)],
)
def test_a_writer_killed_mid_commit_leaves_the_old_version_or_the_new(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    store: str,
    point: str,
    survivor: str,
    version: int,
) -> None:
    root, storage = where(request, tmp_path, store)
    layout = predictions_layout(root, "m", StorageConfig.model_validate(storage), "delta")
    commit(layout, DAY, stage(layout.staging_for(DAY, "r1"), [1, 2], "r1"), "r1")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, root, point, json.dumps(storage)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},  # the test dirs' helpers
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr

    table = open_table(layout.table_dir)
    ids = sorted(table.to_pyarrow_table()["id"].to_pylist())
    assert table.version() == version and layout.current_run_id(DAY) == survivor
    assert ids == ([1, 2] if survivor == "r1" else [10, 11, 12, 13])
    assert count_rows(layout.committed_dir(DAY)) == len(ids)
    assert committed_version(layout.table_dir, DAY) == version  # from the log either way
    manifest = read_manifest(layout.committed_dir(DAY))
    assert manifest is not None and manifest.run_id == survivor

    # a later run's recovery removes what the killed run left, never a committed run
    recover(replace(layout, grace_period_s=0.0), DAY)
    left = sorted(p.name for p in (layout.partition_dir(DAY) / "_runs").iterdir())
    assert left == (["r1"] if survivor == "r1" else ["r1", "r2"])

    rerun = stage(layout.staging_for(DAY, "r3"), [5], "r3")
    assert commit(layout, DAY, rerun, "r3").version == version + 1
    assert open_table(layout.table_dir).to_pyarrow_table()["id"].to_pylist() == [5]
    if survivor == "r2":  # time travel: the version before the killed writer's commit
        assert open_table(layout.table_dir, 0).to_pyarrow_table()["id"].to_pylist() == [1, 2]
