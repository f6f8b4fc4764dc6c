"""#31: a released lease leaves nothing under ``_leases`` (its guard file went with it), and
removing the guard never lets two contenders hold it at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from batch_serving.tables.file_lease import FileLease, lease_path


def lease_at(tmp_path: Path) -> Path:
    return lease_path(tmp_path / "out", "predictions", "churn", "ds=2026-11-22")


def test_released_lease_leaves_no_guard_file(tmp_path: Path) -> None:
    path = lease_at(tmp_path)
    with FileLease(path, "run-a", heartbeat_s=0.05, stale_after_s=30):
        time.sleep(0.3)  # a few heartbeats, each taking the guard
        assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == []


def test_a_guard_removed_while_a_contender_waits_for_it_is_not_held_twice(
    tmp_path: Path,
) -> None:
    """B opens the guard file and blocks on its lock; A removes that file while holding the
    lock, then lets go. B gets the lock of a file no longer at the path: it must take the new
    guard file instead, so a third contender C finds the guard busy while B holds it."""
    path = lease_at(tmp_path)
    path.parent.mkdir(parents=True)
    a, b, c = (FileLease(path, run) for run in ("run-a", "run-b", "run-c"))
    b_in, b_done, b_held = threading.Event(), threading.Event(), []

    def contender_b() -> None:
        with b._guarded() as locked:
            b_held.append(locked)
            b_in.set()
            b_done.wait(10)

    with a._guarded(remove=True) as a_locked:
        assert a_locked
        waiter = threading.Thread(target=contender_b)
        waiter.start()
        time.sleep(0.3)  # B has opened the guard file and waits for its lock
        assert not b_in.is_set()
    assert b_in.wait(5) and b_held == [True]
    try:
        with c._guarded() as c_locked:  # gives up after its 2 s wait
            assert not c_locked
    finally:
        b_done.set()
        waiter.join(5)
    with c._guarded() as c_locked:
        assert c_locked
