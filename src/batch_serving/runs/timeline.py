"""When each part of a run happened, in seconds since its process started (issue #30).

A step's duration says what it cost; the timeline says what the run waited for: the process
start and imports before the first step, the JVM starting in a thread beside the model
download, the metastore waking up beside the scoring, the SQL catalog beside the MLflow
record. ``StepTimer`` records a span per step (``runs.context``); this module holds the span
type, the process's own start, and the text ``-v`` prints.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MAIN_LANE = "main"


@dataclass(frozen=True)
class Span:
    """One step: start and end in seconds since the process started; ``lane`` is the thread
    it ran on ("main", or the name of a background thread, whose spans overlap others)."""

    name: str
    start_s: float
    end_s: float
    lane: str = MAIN_LANE

    @property
    def took(self) -> float:
        return self.end_s - self.start_s


@functools.cache
def process_origin() -> float:
    """The ``time.perf_counter()`` reading at which this process started, so spans measured
    with ``perf_counter`` count from there (the interpreter's start and the imports before the
    first step included). Where /proc says nothing, the first call stands in for the start."""
    now = time.perf_counter()
    try:
        return now - _process_age()
    except (OSError, ValueError, IndexError):
        return now


def _process_age() -> float:
    """Seconds since this process started: the system's uptime minus the process's start
    time after boot (field 22 of /proc/self/stat, in clock ticks)."""
    stat = Path("/proc/self/stat").read_text()
    started_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))


def since_start(reading: float) -> float:
    """A ``perf_counter`` reading as seconds since the process started."""
    return round(reading - process_origin(), 3)


def current_lane() -> str:
    thread = threading.current_thread()
    return MAIN_LANE if thread is threading.main_thread() else thread.name.split("_")[0]


def timeline_lines(spans: Iterable[Span], title: str = "timeline") -> list[str]:
    """The spans by start, one a line: start, end, seconds, name and (for a span that ran
    beside the main thread) its lane."""
    ordered = sorted(spans, key=lambda s: (s.start_s, s.end_s))
    if not ordered:
        return []
    width = max(len(s.name) for s in ordered)
    lines = [f"{title} (seconds since the process started):"]
    for s in ordered:
        lane = "" if s.lane == MAIN_LANE else f"  [beside: {s.lane}]"
        lines.append(
            f"  {s.start_s:8.2f} -> {s.end_s:8.2f}  {s.took:7.2f}s  {s.name:<{width}}{lane}"
        )
    return lines
