"""Per-task counts (``scoring.observers``) back to the driver: a ``TaskTotals``.

Both engines add one ``TaskCounts`` per task; the driver collects the merged value after the
action. Two ways, picked once by the session (``task_totals``):

* ``AccumulatorTotals`` (classic sessions): a Spark accumulator. In ``arrow_direct`` the tasks
  run inside an action (``foreachPartition``), where Spark applies each successful task's
  update exactly once, retries included: exact enough for the gates. In ``dataframe`` they run
  inside ``mapInArrow`` (a transformation): a retried or speculative task can add its counts
  twice, which skews drift proportions by that task's share at most, so that engine counts
  only the observers that tolerate it (``TaskSpec.retry_tolerant``: the drift profile) and its
  gates query Spark.
* ``FileTotals`` (Spark Connect, which has no accumulators): each task writes its counts to one
  small file named by its partition under the run's directory, the driver merges the files and
  removes them. A retried or speculative task rewrites its partition's file, so every
  partition's counts are taken once.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Protocol

from pyspark import Accumulator, AccumulatorParam, TaskContext
from pyspark.sql import SparkSession

from batch_serving.scoring.observers import TaskCounts, TaskSpec
from batch_serving.spark.connect import is_connect
from batch_serving.storage import Location


class TaskTotals(Protocol):
    """Where tasks add their counts (on the executors) and the driver collects them."""

    def add(self, counts: TaskCounts) -> None: ...

    def collect(self) -> TaskCounts: ...


class _CountsParam(AccumulatorParam[TaskCounts]):
    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    def zero(self, value: TaskCounts) -> TaskCounts:
        return self.spec.partial()

    def addInPlace(self, a: TaskCounts, b: TaskCounts) -> TaskCounts:
        return a.merge(b, self.spec)


@dataclass(frozen=True)
class AccumulatorTotals:
    accumulator: Accumulator[TaskCounts]

    def add(self, counts: TaskCounts) -> None:
        self.accumulator.add(counts)

    def collect(self) -> TaskCounts:
        return self.accumulator.value


@dataclass(frozen=True)
class FileTotals:
    directory: Location
    spec: TaskSpec

    def add(self, counts: TaskCounts) -> None:
        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        (self.directory / f"part-{partition:05d}.pickle").write_atomic(pickle.dumps(counts))

    def collect(self) -> TaskCounts:
        total = self.spec.partial()
        if not self.directory.exists():
            return total
        for part in sorted(self.directory.glob("part-*.pickle")):
            total = total.merge(pickle.loads(part.read_bytes()), self.spec)
        self.directory.rmtree(ignore_errors=True)
        return total


def task_totals(spark: SparkSession, spec: TaskSpec, directory: Location) -> TaskTotals:
    """Accumulator in a classic session; under Spark Connect, files in ``directory`` (a
    directory of the run that the executors can write, like its staging)."""
    if is_connect(spark):
        directory.rmtree(ignore_errors=True)  # a previous attempt of this run's tasks
        directory.mkdir(parents=True, exist_ok=True)
        return FileTotals(directory, spec)
    return AccumulatorTotals(spark.sparkContext.accumulator(spec.partial(), _CountsParam(spec)))
