"""The lease as a file (``FileLeases``, ``FileLease``): on a local or shared POSIX directory.

The file is created whole or not at all (written to a temporary name, then ``os.link``-ed,
which fails if the lease exists), so readers never see half a lease. Every step that replaces
or removes the file (takeover, heartbeat, release) runs under a short ``flock`` on a guard file
next to it, so a contender re-reads and removes exactly the file it judged stale; without it,
two contenders could both win (one renames away the other's fresh lease, and a third creates
one while it is being put back). The stale file is renamed aside and checked to be the one
judged before it is dropped. Creating a lease needs no guard: ``os.link`` only succeeds when
there is no file. A lock dies with its process. The run that releases its lease removes the
guard file too, while holding its lock: a contender that opened the removed file and locks it
afterwards sees that the path no longer names that file and opens the new one, so a removed
guard never lets two contenders in at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from batch_serving.errors import ConfigError, StorageError
from batch_serving.tables.lease import (
    LEASES_DIR,
    LeaseHolder,
    WriteLease,
    encode_holder,
    new_holder,
    parse_holder,
    stamp,
)

log = logging.getLogger(__name__)

_ATTEMPTS = 5  # create / judge / set aside rounds before reporting whoever holds the lease now

_GUARD_WAIT_S = 2.0  # the guard is held for microseconds; longer means a stopped process


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
