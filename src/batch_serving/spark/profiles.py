"""Per-task profile partials back to the driver, through a Spark accumulator.

Both engines add one ``ProfilePartial`` per task; the driver reads the merged value after the
action. In ``arrow_direct`` the tasks run inside an action (``foreachPartition``), where Spark
applies each successful task's update exactly once, retries included. In ``dataframe`` they run
inside ``mapInArrow`` (a transformation): a retried or speculative task can add its counts
twice, which skews proportions by that task's share at most.
"""

from __future__ import annotations

from pyspark import Accumulator, AccumulatorParam
from pyspark.sql import SparkSession

from batch_serving.monitoring.profile import ProfilePartial, ProfileSpec


class _PartialParam(AccumulatorParam[ProfilePartial]):
    def __init__(self, spec: ProfileSpec) -> None:
        self.spec = spec

    def zero(self, value: ProfilePartial) -> ProfilePartial:
        return self.spec.partial()

    def addInPlace(self, a: ProfilePartial, b: ProfilePartial) -> ProfilePartial:
        return a.merge(b)


def profile_accumulator(spark: SparkSession, spec: ProfileSpec) -> Accumulator[ProfilePartial]:
    return spark.sparkContext.accumulator(spec.partial(), _PartialParam(spec))
