"""The date's lease as an object on the bucket, kept apart by conditional writes: one writer
per (table, model, partition) across hosts.

The lease is ``<output_root>/_leases/<table>/<model>/<partition>.json`` on the object store,
the same record as the file lease (``tables.lease.LeaseHolder``). Every change is one
conditional request on that key (``storage.conditional``), so the store itself decides who
wins, whatever host each contender runs on:

* **take**: create only if absent (``If-None-Match: *``);
* **take over a stale lease**: replace only the exact version judged stale (``If-Match`` on
  its ETag); of several contenders that judged the same version, exactly one succeeds and the
  others see the winner's lease at their next read;
* **heartbeat**: replace only if the key still holds our last version; a failed condition
  means we were taken over (the heartbeat stops and ``still_held()`` turns False);
* **release**: delete only if the key still holds our last version (``If-Match`` on
  ``DELETE``). A store that refuses conditional deletes gets a conditional ``PUT`` of a
  released record instead (heartbeat at the epoch): it is stale at once, so the next run takes
  it over with ``If-Match``, and a lease someone else took meanwhile is never touched.

A request whose answer was lost (a retry then finds the condition failed) is recognised by
reading the key back: a record naming this run is ours. Staleness is judged as for files:
the holder's pid is gone on this host, or its heartbeat is older than ``stale_after_s``
(clocks in sync to well within that); a record that is not a lease is stale once the store's
own modification time is that old.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from batch_serving.errors import StorageError
from batch_serving.storage.conditional import ConditionalObjects
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

_ATTEMPTS = 5  # create / judge / replace rounds before reporting whoever holds the lease now
RELEASED_AT = "1970-01-01T00:00:00.000+00:00"  # a released record's heartbeat: stale at once


@dataclass(frozen=True)
class ObjectLeases:
    """Lease objects under ``<prefix>/_leases/`` of one bucket (``prefix``: the output root's
    key inside the bucket)."""

    objects: ConditionalObjects
    prefix: str

    def key(self, table: str, model: str, partition: str) -> str:
        for part in (table, model, partition):
            if part in ("", ".", "..") or "/" in part:
                raise StorageError(f"lease key part {part!r} must be a single name")
        parts = (self.prefix, LEASES_DIR, table, model, f"{partition}.json")
        return "/".join(p for p in parts if p)

    def lease(
        self, table: str, model: str, partition: str, run_id: str, *, wait: bool = False
    ) -> ObjectLease:
        return ObjectLease(self.objects, self.key(table, model, partition), run_id, wait=wait)

    def holders(self, table: str, model: str) -> list[LeaseHolder]:
        folder = self.key(table, model, "x").rsplit("/", 1)[0] + "/"
        try:
            keys = [k for k in self.objects.keys(folder) if k.endswith(".json")]
            found = [self.objects.read(k) for k in sorted(keys)]
        except OSError as error:
            raise StorageError(f"cannot list leases {self.objects.uri(folder)}: {error}") from None
        holders = [parse_holder(v.data) for v in found if v is not None]
        return [h for h in holders if h is not None]


class ObjectLease(WriteLease):
    """The lease at ``key`` of ``objects``; ``_etag`` is the version we last wrote."""

    def __init__(
        self,
        objects: ConditionalObjects,
        key: str,
        run_id: str,
        *,
        wait: bool = False,
        **timing: float,
    ) -> None:
        """``timing``: ``WriteLease``'s ``wait_timeout_s``, ``stale_after_s``, ``heartbeat_s``
        and ``poll_s``."""
        super().__init__(objects.uri(key), run_id, wait=wait, **timing)
        self.objects, self.key = objects, key
        self._holder: LeaseHolder | None = None
        self._etag: str | None = None

    def holder(self) -> LeaseHolder | None:
        seen = self.objects.read(self.key)
        return None if seen is None else parse_holder(seen.data)

    def _try_acquire(self) -> str | None:
        blocker = "runs that keep replacing it"
        try:
            for _ in range(_ATTEMPTS):
                mine = new_holder(self.run_id)
                etag = self.objects.create(self.key, encode_holder(mine))
                if etag is not None:
                    log.info("run %s took lease %s", self.run_id, self.where)
                    self._took(mine, etag)
                    return None
                seen = self.objects.read(self.key)
                if seen is None:
                    continue  # released between our create and our read
                holder = parse_holder(seen.data)
                if holder is not None and holder.run_id == self.run_id:
                    self._took(holder, seen.etag)  # our create; its answer was lost
                    return None
                age = time.time() - seen.modified
                blocker = holder.describe() if holder else f"a corrupt object ({age:.0f} s old)"
                reason = self._stale_reason(holder, age)
                if reason is None:
                    return blocker
                etag = self.objects.replace(self.key, encode_holder(mine), seen.etag)
                if etag is not None:
                    log.warning("broke stale lease %s of %s: %s", self.where, blocker, reason)
                    self._took(mine, etag)
                    return None
        except OSError as error:
            raise StorageError(f"cannot take lease {self.where}: {error}") from None
        return blocker

    def _took(self, holder: LeaseHolder, etag: str) -> None:
        self._holder, self._etag = holder, etag

    def _beat_once(self) -> bool:
        if self._holder is None or self._etag is None:
            return False
        beat = replace(self._holder, heartbeat_at=stamp())
        etag = self.objects.replace(self.key, encode_holder(beat), self._etag)
        if etag is not None:
            self._took(beat, etag)
            return True
        if self._reclaim():
            return True
        now = self.holder()
        log.warning(
            "lease %s was taken over (%s); heartbeat stops",
            self.where,
            now.describe() if now else "no readable lease",
        )
        return False

    def _reclaim(self) -> bool:
        """After a failed condition: is the key's version ours after all (a write whose
        answer was lost)? Then adopt it."""
        seen = self.objects.read(self.key)
        holder = parse_holder(seen.data) if seen is not None else None
        if seen is None or holder is None or holder.run_id != self.run_id:
            return False
        self._took(holder, seen.etag)
        return True

    def _release(self) -> None:
        if self._holder is None or self._etag is None:
            return
        outcome = self.objects.delete(self.key, self._etag)
        if outcome == "changed" and self._reclaim():
            outcome = self.objects.delete(self.key, self._etag)
        if outcome == "unsupported":
            released = replace(self._holder, heartbeat_at=RELEASED_AT)
            written = self.objects.replace(self.key, encode_holder(released), self._etag)
            outcome = "deleted" if written is not None else "changed"
        if outcome == "deleted":
            log.info("run %s released lease %s", self.run_id, self.where)
        else:
            now = self.holder()
            log.warning(
                "lease %s holds %s, not run %s; left as it is",
                self.where,
                now.describe() if now else "no readable lease",
                self.run_id,
            )
        self._holder = self._etag = None
