"""Per-task counts (``scoring.observers``) back to the driver, through a Spark accumulator.

Both engines add one ``TaskCounts`` per task; the driver reads the merged value after the
action. In ``arrow_direct`` the tasks run inside an action (``foreachPartition``), where Spark
applies each successful task's update exactly once, retries included: exact enough for the
gates. In ``dataframe`` they run inside ``mapInArrow`` (a transformation): a retried or
speculative task can add its counts twice, which skews drift proportions by that task's share
at most, so that engine counts only the observers that tolerate it (``TaskSpec.retry_tolerant``:
the drift profile) and its gates query Spark.

Spark Connect has no accumulators: a run that needs task counts there fails before scoring
with a ConfigError naming the feature (the gates still query Spark; only the drift profile of
``monitoring`` counts in the tasks).
"""

from __future__ import annotations

from pyspark import Accumulator, AccumulatorParam
from pyspark.sql import SparkSession

from batch_serving.errors import ConfigError
from batch_serving.scoring.observers import TaskCounts, TaskSpec
from batch_serving.spark.connect import is_connect, unsupported


class _CountsParam(AccumulatorParam[TaskCounts]):
    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    def zero(self, value: TaskCounts) -> TaskCounts:
        return self.spec.partial()

    def addInPlace(self, a: TaskCounts, b: TaskCounts) -> TaskCounts:
        return a.merge(b, self.spec)


def task_accumulator(spark: SparkSession, spec: TaskSpec) -> Accumulator[TaskCounts]:
    """The accumulator the tasks add their counts to (merged per ``spec``)."""
    if is_connect(spark):
        raise ConfigError(
            unsupported(
                f"counting {', '.join(o.key for o in spec.observers)} in the scoring tasks "
                "(a Spark accumulator)",
                "set monitoring.enabled: false or run with a classic session",
            )
        )
    return spark.sparkContext.accumulator(spec.partial(), _CountsParam(spec))
