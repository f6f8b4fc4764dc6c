"""Staging left behind by dead runs (issue #12.4): found and removed by the next run of the model.

A run stages into ``_staging/<table>/<model>/<run_id>/`` only while it holds its date's lease
(``tables.lease``), and removes its staging before it releases the lease. A run killed with
``kill -9`` does neither, so its staging stays. The next run of the same model therefore looks
at every staging directory of the model and removes those whose run is no longer alive:

* **provably dead**: no lease of the model names the run with a live holder (the lease is gone,
  taken over, or stale: pid not running on this host, or no heartbeat for ``stale_after_s``);
* **too old**: where liveness cannot be judged (no lease storage), staging whose newest file is
  older than ``output.staging_max_age_hours``.

A staging directory whose run holds a live lease is never touched, whatever its age. Storage
access goes through three small functions (``list_dirs``, ``newest_mtime``, ``remove_tree``)
and the layout's lease store (``TableLayout.lease_holders``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from batch_serving.errors import StorageError
from batch_serving.tables.layout import TableLayout
from batch_serving.tables.lease import LeaseHolder, stale_reason

log = logging.getLogger(__name__)

STALE_AFTER_S = 120.0  # as WriteLease's default: a holder silent for this long is dead


@dataclass(frozen=True)
class StagingVerdict:
    """One staging directory and why it is kept or removed."""

    path: Path
    run_id: str
    remove: bool
    reason: str

    def describe(self) -> str:
        return f"{self.path} (run {self.run_id}: {self.reason})"


def list_dirs(parent: Path) -> list[Path]:
    """Sub-directories of ``parent`` (none if it does not exist), sorted."""
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir())


def newest_mtime(tree: Path) -> float:
    """Modification time of the newest entry in ``tree`` (the run's last sign of life there)."""
    newest = tree.stat().st_mtime
    for p in tree.rglob("*"):
        try:
            newest = max(newest, p.lstat().st_mtime)
        except FileNotFoundError:  # removed while we looked (a task renaming its part file)
            continue
    return newest


def remove_tree(tree: Path) -> None:
    shutil.rmtree(tree, ignore_errors=True)
    if tree.exists():
        raise StorageError(f"cannot remove stale staging directory {tree}")


def judge(
    path: Path,
    holders: Iterable[LeaseHolder] | None,
    age_s: float,
    max_age_s: float,
    stale_after_s: float = STALE_AFTER_S,
) -> StagingVerdict:
    """Keep or remove one staging directory. ``holders`` None: liveness cannot be judged here
    (no leases on this storage), so only the age decides."""
    run_id = path.name
    if holders is None:
        if age_s > max_age_s:
            return StagingVerdict(path, run_id, True, f"older than {max_age_s:g} s ({age_s:.0f} s)")
        return StagingVerdict(path, run_id, False, f"{age_s:.0f} s old, liveness unknown")
    named = [h for h in holders if h.run_id == run_id]
    if not named:
        return StagingVerdict(path, run_id, True, "dead: no lease names this run")
    reason = stale_reason(named[0], stale_after_s)
    if reason is not None:
        return StagingVerdict(path, run_id, True, f"dead: its lease is stale ({reason})")
    return StagingVerdict(path, run_id, False, f"alive: {named[0].describe()}")


def clean_staging(
    layouts: Iterable[TableLayout],
    lease_holders: Callable[[], list[LeaseHolder]] | None,
    max_age_s: float,
    keep_run: str,
    stale_after_s: float = STALE_AFTER_S,
) -> list[StagingVerdict]:
    """Remove the staging of the model's dead runs in each table; returns what was removed.

    Staging directories are listed BEFORE the leases are read: a run creates its staging only
    after taking its lease and removes it before releasing it, so a live run seen in the
    listing is still named by a lease when we read them."""
    # local staging only: on object stores a run stages in its own run directory, which the
    # pointer protocol cleans up (tables.object_commit.clean_expired)
    parents = [layout.staging_dir("x").parent.as_local() for layout in layouts]
    found = [p for parent in parents if parent is not None for p in list_dirs(parent)]
    found = [p for p in found if p.name != keep_run]
    if not found:
        return []
    holders = lease_holders() if lease_holders is not None else None
    now, removed = time.time(), []
    for path in found:
        try:
            age_s = now - newest_mtime(path)
        except FileNotFoundError:
            continue  # its run finished and removed it meanwhile
        verdict = judge(path, holders, age_s, max_age_s, stale_after_s)
        if verdict.remove:
            remove_tree(path)
            log.warning("removed staging of a dead run: %s", verdict.describe())
            removed.append(verdict)
        else:
            log.info("kept staging %s", verdict.describe())
    return removed
