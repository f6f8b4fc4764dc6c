"""What a run read and staged, taken once before the commit: every input row accounted for,
each shadow compared with the champion, each cascade stage's rows, the files read. The
manifest records all of it; the bad-row limit reads the counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batch_serving.runs.compare import cascade_stages, compare_shadows
from batch_serving.runs.context import RunContext
from batch_serving.runs.steps import Counts, reconcile
from batch_serving.scoring.cascade_check import StageEvidence
from batch_serving.scoring.comparison import ComparisonSummary
from batch_serving.scoring.plan import ScoringPlan
from batch_serving.storage import AnyPath


@dataclass(frozen=True)
class StagedOutcome:
    counts: Counts
    comparison: dict[str, ComparisonSummary]
    cascade: list[StageEvidence]
    input_files: Sequence[AnyPath]  # the data files read; none when Spark listed them itself


def staged_outcome(
    run: RunContext, plan: ScoringPlan, input_rows: int, input_files: Sequence[AnyPath]
) -> StagedOutcome:
    """Reconciles first: a staged output that lost or doubled rows is refused before the
    shadows and stages are read."""
    counts = reconcile(run, input_rows)
    staged = run.staging
    return StagedOutcome(
        counts,
        compare_shadows(plan, staged.predictions),
        cascade_stages(plan, staged.predictions, staged.quarantine),
        input_files,
    )
