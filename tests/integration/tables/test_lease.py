"""The partition write lease: one writer per (table, model, partition), across real processes.

Holders in other processes are real ``python -c`` children that take the lease and then signal
readiness through a file, so "another run" here means another pid, as it does in production.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batch_serving.errors import ConfigError, LeaseHeldError, StorageError
from batch_serving.tables import lease as lease_module
from batch_serving.tables.file_lease import FileLease, lease_path, read_holder
from batch_serving.tables.lease import LeaseHolder

SRC = Path(__file__).resolve().parents[3] / "src"
LOGGER = "batch_serving.tables"  # lease.py and file_lease.py log under it

HOLDER = textwrap.dedent(
    """
    import pathlib, sys, time
    from batch_serving.tables.file_lease import FileLease
    path, run_id, ready, hold_s = sys.argv[1:5]
    with FileLease(pathlib.Path(path), run_id, heartbeat_s=0.2, stale_after_s=30):
        pathlib.Path(ready).write_text("held")
        time.sleep(float(hold_s))
    """
)

RACER = textwrap.dedent(
    """
    import pathlib, sys, time
    from batch_serving.errors import LeaseHeldError
    from batch_serving.tables.file_lease import FileLease
    path, base = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[3])
    run_id, rounds = sys.argv[2], int(sys.argv[4])
    (base / f"{run_id}.ready").write_text("ready")
    for turn in range(rounds):
        while not (base / f"go.{turn}").exists():
            time.sleep(0.0005)
        try:
            with FileLease(path, run_id, stale_after_s=60):
                print("won", flush=True)
                deadline = time.monotonic() + 10
                while not (base / f"done.{turn}").exists() and time.monotonic() < deadline:
                    time.sleep(0.002)
        except LeaseHeldError:
            print("lost", flush=True)
    """
)

WAITER = textwrap.dedent(
    """
    import pathlib, sys
    from batch_serving.errors import LeaseHeldError
    from batch_serving.tables.file_lease import FileLease
    path, run_id, timeout_s = sys.argv[1:4]
    try:
        with FileLease(pathlib.Path(path), run_id, wait=True, wait_timeout_s=float(timeout_s),
                   poll_s=0.05):
            print("acquired")
    except LeaseHeldError as error:
        print(f"LeaseHeldError: {error}")
    """
)


def wait_for(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s"
        time.sleep(0.01)


def leftovers(path: Path) -> list[str]:
    """What is next to the lease besides its guard file (which stays, by design)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name != f".{path.name}.guard")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return lease_path(tmp_path / "out", "predictions", "churn", "ds=2026-11-22")


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``python -c script args``; whatever is still running at teardown is killed."""
    started: list[subprocess.Popen[str]] = []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }

    def start(script: str, *args: object) -> subprocess.Popen[str]:
        command = [sys.executable, "-c", script, *map(str, args)]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def hold_elsewhere(
    spawn: Callable[..., subprocess.Popen[str]], path: Path, run_id: str, hold_s: float
) -> subprocess.Popen[str]:
    ready = path.parents[4] / f"{run_id}.ready"  # the tmp_path the lease path was built in
    proc = spawn(HOLDER, path, run_id, ready, hold_s)
    wait_for(ready.exists)
    return proc


def write_lease(path: Path, run_id: str, host: str, pid: int, heartbeat_age_s: float) -> None:
    beat = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=heartbeat_age_s)).isoformat()
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"run_id": run_id, "host": host, "pid": pid, "acquired_at": beat, "heartbeat_at": beat}
    path.write_text(json.dumps(record))


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    return proc.pid


def test_lease_path_is_one_file_under_the_underscore_leases_dir(tmp_path: Path) -> None:
    assert lease_path(tmp_path, "predictions", "churn", "ds=2026-11-22") == (
        tmp_path / "_leases" / "predictions" / "churn" / "ds=2026-11-22.json"
    )
    with pytest.raises(ConfigError, match=r"'\.\./x'"):
        lease_path(tmp_path, "predictions", "../x", "ds=2026-11-22")
    with pytest.raises(ConfigError, match="heartbeat_s"):
        FileLease(tmp_path / "l.json", "run-a", heartbeat_s=120, stale_after_s=120)


def test_acquire_writes_the_holder_and_release_removes_it(path: Path) -> None:
    lease = FileLease(path, "run-a")
    with lease:
        record = json.loads(path.read_text())
        assert set(record) == {"run_id", "host", "pid", "acquired_at", "heartbeat_at"}
        assert (record["run_id"], record["host"], record["pid"]) == (
            "run-a",
            socket.gethostname(),
            os.getpid(),
        )
        acquired = dt.datetime.fromisoformat(record["acquired_at"])
        assert acquired.utcoffset() == dt.timedelta(0)
        assert abs((dt.datetime.now(dt.UTC) - acquired).total_seconds()) < 5
        assert read_holder(path) == LeaseHolder(**record)
        assert lease.still_held()
    assert not path.exists() and read_holder(path) is None
    assert leftovers(path) == []  # no temp file or tombstone left behind
    with lease:  # the same run can take it again, and so can another
        assert read_holder(path).run_id == "run-a"  # type: ignore[union-attr]
    with FileLease(path, "run-b"):
        assert read_holder(path).run_id == "run-b"  # type: ignore[union-attr]


def test_second_run_fails_fast_naming_the_holder(path: Path) -> None:
    with FileLease(path, "run-a"):
        before = path.read_bytes()
        started = time.monotonic()
        with pytest.raises(LeaseHeldError) as raised, FileLease(path, "run-b"):
            pass
        assert time.monotonic() - started < 1
        assert path.read_bytes() == before
    message = str(raised.value)
    assert "run run-a" in message and f"pid {os.getpid()}" in message
    assert str(path) in message and "--wait" in message
    assert raised.value.exit_code == 7 and isinstance(raised.value, StorageError)


def test_holder_killed_with_sigkill_is_taken_over_at_once(
    path: Path, spawn: Callable[..., subprocess.Popen[str]], caplog: pytest.LogCaptureFixture
) -> None:
    holder = hold_elsewhere(spawn, path, "run-killed", hold_s=60)
    with pytest.raises(LeaseHeldError, match=f"run run-killed \\(pid {holder.pid} "):
        FileLease(path, "run-b", stale_after_s=60).__enter__()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)  # reaped: a zombie would still answer kill(pid, 0)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with FileLease(path, "run-b", stale_after_s=60) as lease:  # wait=False: no heartbeat timeout
        assert lease.still_held()
    assert "run-killed" in caplog.text and f"pid {holder.pid} is not running" in caplog.text
    assert [name for name in leftovers(path) if ".stale." in name] == []


def test_stale_heartbeat_from_another_host_is_taken_over_and_fresh_one_is_not(
    path: Path, dead_pid: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    write_lease(path, "run-fresh", "other-host.invalid", dead_pid, heartbeat_age_s=5)
    with (
        pytest.raises(LeaseHeldError, match="run-fresh"),
        FileLease(path, "run-b", stale_after_s=60),
    ):
        pass  # its pid means nothing on this host, and its heartbeat is recent
    assert read_holder(path).run_id == "run-fresh"  # type: ignore[union-attr]

    write_lease(path, "run-old", "other-host.invalid", dead_pid, heartbeat_age_s=300)
    with FileLease(path, "run-b", stale_after_s=60):
        assert read_holder(path).run_id == "run-b"  # type: ignore[union-attr]
    assert "run-old" in caplog.text and "no heartbeat for 300 s" in caplog.text
    assert "run-fresh" not in caplog.text


def test_corrupt_lease_is_stale_only_once_old(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"run_id": "half')
    with pytest.raises(StorageError, match="not a lease"):
        read_holder(path)
    with pytest.raises(LeaseHeldError, match="corrupt"), FileLease(path, "run-b", stale_after_s=60):
        pass
    old = time.time() - 120
    os.utime(path, (old, old))
    with FileLease(path, "run-b", stale_after_s=60):
        assert read_holder(path).run_id == "run-b"  # type: ignore[union-attr]


def test_heartbeat_advances_while_held_and_stops_on_exit(path: Path) -> None:
    with FileLease(path, "run-a", heartbeat_s=0.2, stale_after_s=5):
        first = read_holder(path)
        assert first is not None
        wait_for(lambda: read_holder(path).heartbeat_at != first.heartbeat_at, timeout_s=3)  # type: ignore[union-attr]
        later = read_holder(path)
        assert later is not None and later.acquired_at == first.acquired_at
        assert later.heartbeat_at > first.heartbeat_at
    assert "lease-heartbeat-run-a" not in [t.name for t in threading.enumerate()]
    assert not path.exists()


def test_wait_acquires_once_the_other_process_releases(
    path: Path, spawn: Callable[..., subprocess.Popen[str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    holder = hold_elsewhere(spawn, path, "run-a", hold_s=0.5)
    started = time.monotonic()
    with FileLease(path, "run-b", wait=True, wait_timeout_s=10, poll_s=0.05):
        waited = time.monotonic() - started
        assert read_holder(path).run_id == "run-b"  # type: ignore[union-attr]
    assert 0.1 < waited < 5
    assert holder.wait(timeout=10) == 0  # it released normally; nobody broke its lease
    waiting = [r.getMessage() for r in caplog.records if "waiting for lease" in r.getMessage()]
    assert len(waiting) == 1 and "run run-a" in waiting[0]


def test_wait_gives_up_after_the_timeout(
    path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    """The waiter is a child process, so a wait that never ends fails here instead of hanging."""
    with FileLease(path, "run-a"):
        started = time.monotonic()
        waiter = spawn(WAITER, path, "run-b", 0.3)
        output = waiter.communicate(timeout=10)[0]
        assert 0.3 <= time.monotonic() - started < 5
        assert read_holder(path).run_id == "run-a"  # type: ignore[union-attr]
    assert re.match(rf"LeaseHeldError: waited 0\.\d s for lease {re.escape(str(path))};", output)
    assert "still held by run run-a" in output


def test_only_one_of_many_processes_takes_over_a_stale_lease(
    path: Path, spawn: Callable[..., subprocess.Popen[str]], dead_pid: int, tmp_path: Path
) -> None:
    """Six processes race for the same dead run's lease, several rounds to give a bug a chance."""
    base, racers, rounds = tmp_path, 6, 8
    procs = [spawn(RACER, path, f"run-{i}", base, rounds) for i in range(racers)]
    wait_for(lambda: all((base / f"run-{i}.ready").exists() for i in range(racers)))
    for turn in range(rounds):
        write_lease(path, f"run-dead-{turn}", socket.gethostname(), dead_pid, heartbeat_age_s=1)
        (base / f"go.{turn}").touch()
        results = [proc.stdout.readline().strip() for proc in procs]  # type: ignore[union-attr]
        assert sorted(results) == ["lost"] * (racers - 1) + ["won"], (turn, results)
        (base / f"done.{turn}").touch()
        wait_for(lambda: not path.exists())  # the winner has released
    assert [proc.wait(timeout=10) for proc in procs] == [0] * racers
    assert leftovers(path) == []


def test_takeover_does_not_break_a_lease_renewed_after_it_was_judged_stale(
    path: Path, dead_pid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ABA case: between judging the lease stale and moving it aside, run-c replaces it.

    Cooperating runs cannot do this (the guard's flock serializes them); a writer that bypasses
    the guard can, and the takeover must then put run-c's lease back instead of breaking it.
    """
    write_lease(path, "run-dead", socket.gethostname(), dead_pid, heartbeat_age_s=1)
    real_rename = os.rename

    def rename_after_takeover(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        if Path(src) == path and read_holder(path).run_id == "run-dead":  # type: ignore[union-attr]
            write_lease(path.with_name("fresh.json"), "run-c", "other-host.invalid", 1, 0)
            real_rename(path.with_name("fresh.json"), path)
        real_rename(src, dst)

    monkeypatch.setattr(lease_module.os, "rename", rename_after_takeover)
    with pytest.raises(LeaseHeldError, match="run run-c"), FileLease(path, "run-b"):
        pass
    assert read_holder(path).run_id == "run-c"  # type: ignore[union-attr]


def test_release_leaves_a_lease_that_another_run_took_over(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with FileLease(path, "run-a", heartbeat_s=0.1, stale_after_s=5) as lease:
        write_lease(path.with_name("new.json"), "run-c", "other-host.invalid", 1, 0)
        os.replace(path.with_name("new.json"), path)
        assert not lease.still_held()
        wait_for(lambda: "heartbeat stops" in caplog.text, timeout_s=3)
    assert read_holder(path).run_id == "run-c"  # type: ignore[union-attr]
    assert "left as it is" in caplog.text and "run run-c" in caplog.text
