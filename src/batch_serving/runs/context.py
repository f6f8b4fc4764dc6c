"""A run's identity and bookkeeping: run id, start time, layouts, staging, step timings."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from batch_serving.config import JobConfig
from batch_serving.runs.timeline import Span, current_lane, since_start
from batch_serving.spark.engines import Staging
from batch_serving.tables.inputs import partition_path
from batch_serving.tables.layout import TableLayout, predictions_layout, quarantine_layout

log = logging.getLogger(__name__)


@dataclass
class StepTimer:
    """Wall-clock seconds per named step, in the order the steps ran (a step entered twice,
    e.g. a gate planned before scoring and evaluated after it, adds up), and each step's span
    on the process's timeline (``runs.timeline``: steps on background threads overlap). A
    step that raises is logged as failed, so the log's last step line names where the run
    stopped. Steps may run on several threads at once (the report beside the SQL catalog)."""

    durations: dict[str, float] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    begun: set[str] = field(default_factory=set)  # steps entered, finished or not
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def claim(self, name: str) -> bool:
        """True once per name: for work that two places may start and only one should
        (the metastore's wake-up, begun by the session's thread or by the run)."""
        with self._lock:
            fresh = name not in self.begun
            self.begun.add(name)
        return fresh

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("step %s ...", name)
        with self._lock:
            self.begun.add(name)
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            log.info("step %s failed after %.2fs", name, self.add(name, start))
            raise
        log.info("step %s done in %.2fs", name, self.add(name, start))

    def add(self, name: str, start: float, end: float | None = None) -> float:
        """Time ``name`` from ``start`` to ``end`` (now), ``perf_counter`` readings: for a
        span measured outside ``step`` (the process's startup before the run existed)."""
        end = time.perf_counter() if end is None else end
        took = end - start
        span = Span(name, since_start(start), since_start(end), current_lane())
        with self._lock:
            self.durations[name] = round(self.durations.get(name, 0.0) + took, 3)
            self.spans.append(span)
        return took


T = TypeVar("T")


_UNCUT: list[Future[Any]] = []  # background work the process's exit must wait for
_UNCUT_LOCK = threading.Lock()


def in_background(name: str, work: Callable[[], T], uncut: bool = False) -> Future[T]:
    """``work`` on a thread of its own while the run goes on (the caller waits on the
    future where the result is needed); the thread ends with it. ``uncut``: work that must
    not be cut off by the process's exit even if nobody waits for it (the metastore's boot
    writes Derby's files): ``finish_uncut`` waits for it."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    try:
        future = pool.submit(work)
    finally:
        pool.shutdown(wait=False)
    if uncut:
        with _UNCUT_LOCK:
            _UNCUT.append(future)
    return future


def finish_uncut(timeout: float) -> None:
    """Wait (up to ``timeout`` seconds in all) for every ``uncut`` background work: called by
    the process entry point before it ends the process without the interpreter's teardown."""
    with _UNCUT_LOCK:
        pending = list(_UNCUT)
        _UNCUT.clear()
    wait(pending, timeout=timeout)


def new_run_id(now: dt.datetime) -> str:
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class RunContext:
    """Everything that identifies one scoring run of one date."""

    cfg: JobConfig
    run_date: dt.date
    run_id: str
    started: dt.datetime
    timer: StepTimer
    staging_removed: list[str] = field(default_factory=list)  # dead runs' staging, removed

    @classmethod
    def start(cls, cfg: JobConfig, run_date: dt.date, timer: StepTimer | None = None) -> RunContext:
        started = dt.datetime.now(dt.UTC).replace(microsecond=0)
        return cls(cfg, run_date, new_run_id(started), started, timer or StepTimer())

    @property
    def predictions(self) -> TableLayout:
        cfg = self.cfg
        return predictions_layout(cfg.output.root, cfg.model.name, cfg.storage, cfg.output.format)

    @property
    def quarantine(self) -> TableLayout:
        cfg = self.cfg
        return quarantine_layout(cfg.output.root, cfg.model.name, cfg.storage, cfg.output.format)

    @property
    def staging(self) -> Staging:
        return Staging(
            self.predictions.staging_for(self.run_date, self.run_id),
            self.quarantine.staging_for(self.run_date, self.run_id),
            self.predictions.run_dir(self.run_id) / "_task_counts",
        )

    @property
    def where(self) -> str:
        """The input partition this run scores."""
        return partition_path(self.cfg.input, self.run_date)

    @property
    def title(self) -> str:
        return f"{self.cfg.job} {self.run_date} (run {self.run_id})"
