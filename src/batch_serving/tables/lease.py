"""One writer per (table, model, partition): a lease in the output root (issue #17.1).

Two runs of the same partition that commit together would rewrite each other's manifest, so a
run takes ``<output_root>/_leases/<table>/<model>/<partition>.json`` before writing and keeps it
fresh with a heartbeat. ``WriteLease`` is that protocol (take, wait, beat, release,
``still_held``) and the lease record (``LeaseHolder``, its JSON); where the record is kept is a
``LeaseStore``, chosen once with the layout: ``tables.file_lease.FileLeases`` (files on a local
or shared POSIX directory) or ``tables.object_lease.ObjectLeases`` (objects on the bucket,
conditional writes).

A lease is stale when its holder's pid is gone on this host, or its heartbeat is older than
``stale_after_s`` (hosts must keep their clocks in sync to well within that). If a holder
stalls for longer than that and is taken over, its heartbeat stops at the next beat and
``still_held()`` turns False: check it right before committing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Protocol, Self

from batch_serving.errors import ConfigError, LeaseHeldError

log = logging.getLogger(__name__)

LEASES_DIR = "_leases"  # underscore prefix: Spark and the other readers skip it


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
    What the lease is stored as (a file, an object) is the subclass's:
    ``tables.file_lease.FileLease``, ``tables.object_lease.ObjectLease``; stores hand them out
    (``LeaseStore``)."""

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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stamp() -> str:
    """Now, as a lease records it (ISO-8601 UTC, milliseconds)."""
    return _now().isoformat(timespec="milliseconds")


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True
