"""One writer per (table, model, partition): a lease in the output root (issue #17.1).

Two runs of the same partition that commit together would rewrite each other's manifest, so a
run takes ``<output_root>/_leases/<table>/<model>/<partition>.json`` before writing and keeps it
fresh with a heartbeat. ``WriteLease`` is that protocol (take, wait, beat, release,
``still_held``); where the record is kept is a ``LeaseStore``, chosen once with the layout:
``FileLeases`` (this module: files on a local or shared POSIX directory) or
``tables.object_lease.ObjectLeases`` (objects on the bucket, conditional writes).

The file lease: the file is created whole or not at all (written to a temporary name,
then ``os.link``-ed, which fails if the lease exists), so readers never see half a lease.

A lease is stale when its holder's pid is gone on this host, or its heartbeat is older than
``stale_after_s`` (hosts must keep their clocks in sync to well within that). Every step that
replaces or removes the file (takeover, heartbeat, release) runs under a short ``flock`` on a
guard file next to it, so a contender re-reads and removes exactly the file it judged stale;
without it, two contenders could both win (one renames away the other's fresh lease, and a third
creates one while it is being put back). The stale file is renamed aside and checked to be the
one judged before it is dropped. Creating a lease needs no guard: ``os.link`` only succeeds
when there is no file. A lock dies with its process. The run that releases its lease removes
the guard file too, while holding its lock (issue #31): a contender that opened the removed
file and locks it afterwards sees that the path no longer names that file and opens the new
one, so a removed guard never lets two contenders in at once.

If a holder stalls for longer than ``stale_after_s`` and is taken over, its heartbeat stops at
the next beat and ``still_held()`` turns False: check it right before committing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol, Self

from batch_serving.errors import ConfigError, LeaseHeldError, StorageError

log = logging.getLogger(__name__)

LEASES_DIR = "_leases"  # underscore prefix: Spark and the other readers skip it
_ATTEMPTS = 5  # create / judge / set aside rounds before reporting whoever holds the lease now
_GUARD_WAIT_S = 2.0  # the guard is held for microseconds; longer means a stopped process


@dataclass(frozen=True)
class LeaseHolder:
    """What a lease file says: who holds it and when it last proved to be alive (ISO-8601 UTC)."""

    run_id: str
    host: str
    pid: int
    acquired_at: str
    heartbeat_at: str

    def heartbeat_age_s(self) -> float | None:
        try:
            beat = dt.datetime.fromisoformat(self.heartbeat_at)
        except (TypeError, ValueError):
            return None
        return None if beat.tzinfo is None else (_now() - beat).total_seconds()

    def describe(self) -> str:
        age = self.heartbeat_age_s()
        beat = f"{max(age, 0.0):.0f} s ago" if age is not None else f"at {self.heartbeat_at!r}"
        return f"run {self.run_id} (pid {self.pid} on host {self.host}, heartbeat {beat})"


@dataclass(frozen=True)
class _Seen:
    """One read of a lease file; equal reads mean the same file (inode) with the same content."""

    inode: int
    mtime: float
    data: bytes


def lease_path(output_root: Path, table: str, model: str, partition: str) -> Path:
    for part in (table, model, partition):
        if part in ("", ".", "..") or "/" in part:
            raise ConfigError(f"lease path part {part!r} must be a single file name")
    return Path(output_root) / LEASES_DIR / table / model / f"{partition}.json"


def read_holder(path: Path) -> LeaseHolder | None:
    """The current holder, or None if nobody holds ``path``; a corrupt file is a StorageError."""
    seen, holder = _current(path)
    if seen is not None and holder is None:
        raise StorageError(f"lease file {path} is not a lease (JSON with run_id, host, pid, ...)")
    return holder


def stale_reason(holder: LeaseHolder, stale_after_s: float) -> str | None:
    """Why ``holder`` is dead (its pid is gone on this host, or its heartbeat is older than
    ``stale_after_s``), or None while it may be alive."""
    if holder.host == socket.gethostname() and not _pid_alive(holder.pid):
        return f"pid {holder.pid} is not running on this host"
    age = holder.heartbeat_age_s()
    if age is not None and age > stale_after_s:
        return f"no heartbeat for {age:.0f} s (stale after {stale_after_s:g} s)"
    return None


class WriteLease(ABC):
    """Context manager holding one (table, model, partition) lease for ``run_id`` while the
    block runs: take it (waiting if asked), keep it fresh from a heartbeat thread, release it.
    What the lease is stored as (a file, an object) is the subclass's: ``FileLease``,
    ``tables.object_lease.ObjectLease``; stores hand them out (``LeaseStore``)."""

    def __init__(
        self,
        where: str,
        run_id: str,
        *,
        wait: bool = False,
        wait_timeout_s: float = 3600,
        stale_after_s: float = 120,
        heartbeat_s: float = 10,
        poll_s: float = 1.0,
    ) -> None:
        if not 0 < heartbeat_s < stale_after_s:
            raise ConfigError(
                f"lease heartbeat_s={heartbeat_s} must be > 0 and below stale_after_s="
                f"{stale_after_s}, or a live holder would look stale"
            )
        self.where, self.run_id, self.wait = where, run_id, wait
        self.wait_timeout_s, self.stale_after_s = wait_timeout_s, stale_after_s
        self.heartbeat_s, self.poll_s = heartbeat_s, poll_s
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> Self:
        start, announced = time.monotonic(), False
        while (blocker := self._try_acquire()) is not None:
            waited = time.monotonic() - start
            if not self.wait:
                raise LeaseHeldError(
                    f"lease {self.where} is held by {blocker}: another run is writing this "
                    "partition; run again with --wait to wait for it"
                )
            if waited >= self.wait_timeout_s:
                raise LeaseHeldError(
                    f"waited {waited:.1f} s for lease {self.where}; still held by {blocker}"
                )
            if not announced:
                log.info("waiting for lease %s held by %s", self.where, blocker)
                announced = True
            time.sleep(max(0.0, min(self.poll_s, self.wait_timeout_s - waited)))
        self._stop.clear()
        self._beat = threading.Thread(
            target=self._heartbeat, name=f"lease-heartbeat-{self.run_id}", daemon=True
        )
        self._beat.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        try:
            self._release()
        except OSError as error:  # never mask the block's own exception; the lease goes stale
            log.warning("could not release lease %s: %s", self.where, error)

    def still_held(self) -> bool:
        """Does the lease still name this run? Check it right before committing."""
        holder = self.holder()
        return holder is not None and holder.run_id == self.run_id

    @abstractmethod
    def holder(self) -> LeaseHolder | None:
        """Who holds the lease now (None: nobody, or a record that is not a lease)."""

    @abstractmethod
    def _try_acquire(self) -> str | None:
        """None once we hold the lease, else who holds it (as said in errors and logs)."""

    @abstractmethod
    def _beat_once(self) -> bool:
        """Refresh heartbeat_at if the lease is still ours; False once it is not."""

    @abstractmethod
    def _release(self) -> None:
        """Remove the lease if it is still ours; leave anyone else's as it is."""

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self._beat_once():
                    return
            except OSError as error:  # keep beating: the next one may succeed
                log.warning("lease %s: heartbeat failed: %s", self.where, error)

    def _stale_reason(self, holder: LeaseHolder | None, record_age_s: float) -> str | None:
        if holder is None:
            return "unreadable" if record_age_s > self.stale_after_s else None
        return stale_reason(holder, self.stale_after_s)


class LeaseStore(Protocol):
    """Where the leases of one output root live; chosen once with the layout
    (``tables.layout.table_layout``)."""

    def lease(
        self, table: str, model: str, partition: str, run_id: str, *, wait: bool = False
    ) -> WriteLease:
        """The lease of one partition, for ``run_id`` (taken when its block is entered)."""
        ...

    def holders(self, table: str, model: str) -> list[LeaseHolder]:
        """Holders of every lease of one model (one per partition being written); corrupt
        records are skipped (they name no live run)."""
        ...


@dataclass(frozen=True)
class FileLeases:
    """Lease files under ``root`` (a local or shared POSIX directory)."""

    root: Path

    def path(self, table: str, model: str, partition: str) -> Path:
        return lease_path(self.root, table, model, partition)

    def lease(
        self, table: str, model: str, partition: str, run_id: str, *, wait: bool = False
    ) -> FileLease:
        return FileLease(self.path(table, model, partition), run_id, wait=wait)

    def holders(self, table: str, model: str) -> list[LeaseHolder]:
        folder = self.root / LEASES_DIR / table / model
        if not folder.is_dir():
            return []
        holders = []
        for path in sorted(folder.glob("*.json")):
            try:
                holder = read_holder(path)
            except StorageError:
                continue
            if holder is not None:
                holders.append(holder)
        return holders


class FileLease(WriteLease):
    """The lease as a file at ``path`` (exclusive create, a ``flock`` guard for every change)."""

    def __init__(
        self,
        path: Path,
        run_id: str,
        *,
        wait: bool = False,
        **timing: float,
    ) -> None:
        """``timing``: ``WriteLease``'s ``wait_timeout_s``, ``stale_after_s``, ``heartbeat_s``
        and ``poll_s``."""
        super().__init__(str(path), run_id, wait=wait, **timing)
        self.path = Path(path)
        self._guard_path = self.path.with_name(f".{self.path.name}.guard")
        self._holder: LeaseHolder | None = None

    def holder(self) -> LeaseHolder | None:
        return _current(self.path)[1]

    def _try_acquire(self) -> str | None:
        blocker = "runs that keep replacing it"
        try:
            for _ in range(_ATTEMPTS):
                if self._create():
                    log.info("run %s took lease %s", self.run_id, self.path)
                    return None
                with self._guarded() as locked:
                    seen, holder = _current(self.path)
                    if seen is None:
                        continue  # released between our create and our read
                    age = time.time() - seen.mtime
                    blocker = holder.describe() if holder else f"a corrupt file ({age:.0f} s old)"
                    reason = self._stale_reason(holder, age)
                    if reason is None or not locked:
                        return blocker
                    if self._set_aside(seen):
                        log.warning("broke stale lease %s of %s: %s", self.path, blocker, reason)
        except OSError as error:
            raise StorageError(f"cannot take lease {self.path}: {error}") from None
        return blocker

    def _create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = new_holder(self.run_id)
        tmp = self._write_temp(holder)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        self._holder = holder
        return True

    def _set_aside(self, seen: _Seen) -> bool:
        """Remove the lease file if it is still exactly ``seen``; True if it was removed."""
        tomb = self.path.with_name(f".{self.path.name}.stale.{uuid.uuid4().hex}")
        try:
            os.rename(self.path, tomb)
        except FileNotFoundError:
            return False  # gone already
        try:
            if _see(tomb) == seen:
                return True
            try:  # it changed after we judged it (a heartbeat, or a takeover): put it back
                os.link(tomb, self.path)
            except FileExistsError:
                log.error("lease %s: a newer lease was moved aside and replaced", self.path)
            return False
        finally:
            tomb.unlink(missing_ok=True)

    def _release(self) -> None:
        # unguarded if the guard is stuck: _set_aside still checks
        with self._guarded(remove=True):
            seen, holder = _current(self.path)
            if seen is None or holder is None or holder.run_id != self.run_id:
                now = (
                    holder.describe() if holder else "no file" if seen is None else "a corrupt file"
                )
                log.warning(
                    "lease %s holds %s, not run %s; left as it is", self.path, now, self.run_id
                )
            elif self._set_aside(seen):
                log.info("run %s released lease %s", self.run_id, self.path)

    def _beat_once(self) -> bool:
        with self._guarded() as locked:
            if not locked or self._holder is None:
                return True  # try again at the next beat
            holder = _current(self.path)[1]
            if holder is None or holder.run_id != self.run_id:
                now = holder.describe() if holder else "no readable lease"
                log.warning("lease %s was taken over (%s); heartbeat stops", self.path, now)
                return False
            self._holder = replace(self._holder, heartbeat_at=stamp())
            tmp = self._write_temp(self._holder)
            try:
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
            return True

    @contextlib.contextmanager
    def _guarded(self, *, remove: bool = False) -> Iterator[bool]:
        """Hold the guard's flock (True), or report that it stayed busy (False). The lock
        counts only on the file the guard path names now; ``remove``: delete the guard file
        at the end of the block, still under its lock (what ``_release`` does)."""
        deadline = time.monotonic() + _GUARD_WAIT_S
        while True:
            fd = os.open(self._guard_path, os.O_RDWR | os.O_CREAT, 0o644)
            locked = _flock(fd, max(0.0, deadline - time.monotonic()))
            if not locked or _is_at(fd, self._guard_path):
                break
            os.close(fd)  # we locked a guard its holder removed meanwhile: take the new one
        try:
            yield locked
            if locked and remove:
                self._guard_path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing releases the lock

    def _write_temp(self, holder: LeaseHolder) -> Path:
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(encode_holder(holder))
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return tmp


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stamp() -> str:
    """Now, as a lease records it (ISO-8601 UTC, milliseconds)."""
    return _now().isoformat(timespec="milliseconds")


def _see(path: Path) -> _Seen | None:
    try:
        with path.open("rb") as file:
            stat = os.fstat(file.fileno())
            return _Seen(stat.st_ino, stat.st_mtime, file.read())
    except FileNotFoundError:
        return None


def _current(path: Path) -> tuple[_Seen | None, LeaseHolder | None]:
    """The file as read now, and its holder if it parses as a lease."""
    seen = _see(path)
    return (None, None) if seen is None else (seen, parse_holder(seen.data))


def parse_holder(data: bytes) -> LeaseHolder | None:
    """The holder a lease record names, None if it is not a lease."""
    try:
        raw = json.loads(data)
        holder = LeaseHolder(
            str(raw["run_id"]),
            str(raw["host"]),
            int(raw["pid"]),
            str(raw["acquired_at"]),
            str(raw["heartbeat_at"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    valid = holder.pid > 0 and holder.heartbeat_age_s() is not None
    return holder if valid else None


def encode_holder(holder: LeaseHolder) -> bytes:
    return (json.dumps(asdict(holder), sort_keys=True) + "\n").encode()


def new_holder(run_id: str) -> LeaseHolder:
    """This process's record as a fresh holder of a lease for ``run_id``."""
    now = stamp()
    return LeaseHolder(run_id, socket.gethostname(), os.getpid(), now, now)


def _flock(fd: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)


def _is_at(fd: int, path: Path) -> bool:
    """Is the open file ``fd`` still the file at ``path`` (not removed nor replaced)?"""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True
