"""What a scoring task counts besides scoring: the ``TaskObserver`` seam.

An observer is decided once on the driver (monitoring's drift profile, quality's gate metrics
implement it), shipped with the scoring plan in a ``TaskSpec``, fed by each task the batches it
reads and the predictions it writes (its counts live in ``TaskCounts``), and merged on the
driver. One pass over the data serves scoring and every observer. The scoring core only knows
this protocol, so it imports neither monitoring nor quality (they depend on scoring, not the
reverse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pyarrow as pa

C = TypeVar("C")


class TaskObserver(Protocol[C]):
    """Counts of type ``C`` kept beside scoring; the observer itself is small, immutable and
    picklable (it travels to every task), its counts are mergeable."""

    @property
    def key(self) -> str:
        """Names this observer's counts in ``TaskCounts`` (unique within a ``TaskSpec``)."""
        ...

    @property
    def exact(self) -> bool:
        """True if the counts are wrong when a retried task adds its counts twice (gate
        metrics); an engine that cannot apply each task's counts exactly once leaves it out."""
        ...

    @property
    def columns(self) -> tuple[str, ...]:
        """Input columns it reads beyond the scoring plan's (the task reads them too)."""
        ...

    def zero(self) -> C:
        """Counts of no rows."""
        ...

    def observe(self, counts: C, batch: pa.RecordBatch, predictions: pa.RecordBatch) -> None:
        """Add one scored batch to ``counts``: ``batch`` as read, ``predictions`` as written."""
        ...

    def merge(self, a: C, b: C) -> C:
        """The counts of both sets of rows."""
        ...


@dataclass(frozen=True)
class TaskSpec:
    """Every observer of a run's scoring tasks (none: the tasks only score)."""

    observers: tuple[TaskObserver[Any], ...] = ()

    def partial(self) -> TaskCounts:
        return TaskCounts({o.key: o.zero() for o in self.observers})

    @property
    def empty(self) -> bool:
        return not self.observers

    @property
    def extra_columns(self) -> tuple[str, ...]:
        """Input columns only the observers read (the task reads them beside the plan's)."""
        return tuple(dict.fromkeys(c for o in self.observers for c in o.columns))

    def retry_tolerant(self) -> TaskSpec | None:
        """The observers whose counts survive a task counted twice (None if there are none):
        what an engine counting inside a transformation (retries, speculation) may count."""
        kept = tuple(o for o in self.observers if not o.exact)
        return TaskSpec(kept) if kept else None


@dataclass
class TaskCounts:
    """Mergeable counts of some rows (one task's, or several merged), one entry per observer
    key; small and picklable."""

    counts: dict[str, Any] = field(default_factory=dict)

    def add(self, spec: TaskSpec, batch: pa.RecordBatch, predictions: pa.RecordBatch) -> None:
        """Count one scored batch: ``batch`` as read, ``predictions`` as written."""
        for observer in spec.observers:
            observer.observe(self.counts[observer.key], batch, predictions)

    def merge(self, other: TaskCounts, spec: TaskSpec) -> TaskCounts:
        return TaskCounts(
            {o.key: o.merge(self.counts[o.key], other.counts[o.key]) for o in spec.observers}
        )

    def get(self, key: str) -> Any:
        """The counts of the observer named ``key`` (None if it was not counted)."""
        return self.counts.get(key)
