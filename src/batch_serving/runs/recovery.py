"""Repair a date whose commit was interrupted between its two renames.

Runs at the very start of every score run (before validation, whatever the run's outcome),
of ``check-output`` and ``publish``, and on demand as ``batch-serving recover``; always under
the date's lease, so it never races a live commit.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from batch_serving.config import JobConfig
from batch_serving.tables.commit import recover
from batch_serving.tables.layout import TableLayout, predictions_layout, quarantine_layout
from batch_serving.tables.staging import clean_staging

log = logging.getLogger(__name__)


def layouts(cfg: JobConfig) -> tuple[TableLayout, TableLayout]:
    return (
        predictions_layout(cfg.output.root, cfg.model.name, cfg.storage, cfg.output.format),
        quarantine_layout(cfg.output.root, cfg.model.name, cfg.storage, cfg.output.format),
    )


def recover_date(cfg: JobConfig, run_date: dt.date) -> list[str]:
    """Put back the previous partition of each table whose swap was interrupted (caller holds
    the date's lease); returns the tables restored."""
    return [layout.table for layout in layouts(cfg) if recover(layout, run_date)]


def remove_dead_staging(cfg: JobConfig, keep_run: str) -> list[str]:
    """Staging of this model's runs that are no longer alive (killed mid-write), removed; the
    staging of a concurrent live run (another date, its own lease) is kept. One line each."""
    tables = layouts(cfg)
    holders = tables[0].lease_holders  # a run's lease: its predictions date
    max_age_s = cfg.output.staging_max_age_hours * 3600
    return [v.describe() for v in clean_staging(tables, holders, max_age_s, keep_run)]


@contextmanager
def holding_date(cfg: JobConfig, run_date: dt.date, purpose: str, wait: bool) -> Iterator[None]:
    """The date's lease for a step that is not a score run (publish, check-output, recover)."""
    holder = f"{purpose}-{uuid.uuid4().hex[:8]}"
    with layouts(cfg)[0].lease(run_date, holder, wait=wait):
        yield


def interrupted_dates(cfg: JobConfig) -> list[dt.date]:
    """Dates with leftovers of a swap (``_trash``) in either table."""
    dates: set[str] = set()
    for layout in layouts(cfg):
        parent = layout.trash_dir(dt.date.min, "x").parent
        if parent.is_dir():
            dates |= {p.name.split("=", 1)[1].split(".", 1)[0] for p in parent.iterdir()}
    return sorted(dt.date.fromisoformat(d) for d in dates)


def recovered(cfg: JobConfig, run_date: dt.date | None, wait: bool) -> dict[dt.date, list[str]]:
    """``batch-serving recover``: each date looked at (``run_date``, else every interrupted
    one) -> the tables restored."""
    dates = [run_date] if run_date is not None else interrupted_dates(cfg)
    done: dict[dt.date, list[str]] = {}
    for day in dates:
        with holding_date(cfg, day, "recover", wait):
            done[day] = recover_date(cfg, day)
    return done


def recovery_lines(model: str, done: dict[dt.date, list[str]]) -> list[str]:
    """``recovered``'s outcome as ``batch-serving recover`` prints it: one line per date."""
    lines = []
    for day, restored in done.items():
        what = f"restored {', '.join(restored)}" if restored else "nothing to repair"
        lines.append(f"{model} ds={day}: {what}")
    return lines or [f"{model}: no interrupted commits"]
