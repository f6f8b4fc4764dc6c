"""What a scoring task counts besides scoring: the drift profile and the gates' metrics.

Decided once on the driver (``TaskSpec``), shipped with the scoring plan, filled by each task
from the batches it reads and the predictions it writes (``TaskCounts``), merged on the driver.
One pass over the data serves scoring, drift and the gates.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from batch_serving.monitoring.profile import ProfilePartial, ProfileSpec
from batch_serving.quality.metric_plan import MetricSpec
from batch_serving.quality.task_metrics import MetricCounts


@dataclass(frozen=True)
class TaskSpec:
    """``input_metrics`` are counted on the input batches, ``output_metrics`` on the
    predictions; ``extra_columns``: input columns only the input gate reads (the task reads
    them beside the scoring plan's)."""

    profile: ProfileSpec | None = None
    input_metrics: tuple[MetricSpec, ...] = ()
    output_metrics: tuple[MetricSpec, ...] = ()
    extra_columns: tuple[str, ...] = ()

    def partial(self) -> TaskCounts:
        return TaskCounts(
            self.profile.partial() if self.profile is not None else None,
            MetricCounts.empty(self.input_metrics),
            MetricCounts.empty(self.output_metrics),
        )

    @property
    def empty(self) -> bool:
        return self.profile is None and not self.input_metrics and not self.output_metrics


@dataclass
class TaskCounts:
    """Mergeable counts of some rows (one task's, or several merged); small and picklable."""

    profile: ProfilePartial | None
    input: MetricCounts
    output: MetricCounts

    def add(self, spec: TaskSpec, batch: pa.RecordBatch, predictions: pa.RecordBatch) -> None:
        """Count one scored batch: ``batch`` as read, ``predictions`` as written."""
        if self.profile is not None and spec.profile is not None:
            self.profile.add(spec.profile, batch, predictions)
        if spec.input_metrics:
            self.input.add(spec.input_metrics, batch)
        if spec.output_metrics:
            self.output.add(spec.output_metrics, predictions)

    def merge(self, other: TaskCounts, spec: TaskSpec) -> TaskCounts:
        profile = (
            self.profile.merge(other.profile)
            if self.profile is not None and other.profile is not None
            else self.profile or other.profile
        )
        return TaskCounts(
            profile,
            self.input.merge(other.input, spec.input_metrics),
            self.output.merge(other.output, spec.output_metrics),
        )
