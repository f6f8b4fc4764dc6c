"""The task-observer seam (``scoring.observers``): monitoring's profile and quality's gate
metrics counted beside scoring through one protocol; the scoring core imports neither. No JVM."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pyarrow as pa

from batch_serving.monitoring.profile import ColumnSpec, ProfileObserver, ProfileSpec
from batch_serving.quality.metric_plan import Condition, MetricSpec
from batch_serving.quality.task_metrics import MetricsObserver
from batch_serving.scoring.observers import TaskCounts, TaskSpec

SCORING = Path(__file__).resolve().parents[3] / "src" / "batch_serving" / "scoring"

PROFILE = ProfileObserver(
    ProfileSpec(
        (
            ColumnSpec("x", "numeric", "feature", edges=(0.0, 10.0)),
            ColumnSpec("score", "numeric", "score", edges=(0.5,)),
        )
    )
)
INPUT = MetricsObserver(
    "input",
    (
        MetricSpec("row_count"),
        MetricSpec("unexpected_count", "x", Condition("between", low=0, high=10)),
        MetricSpec("max", "x"),
    ),
    "input",
    columns=("x",),
)
OUTPUT = MetricsObserver("output", (MetricSpec("min", "score"),), "output")
SPEC = TaskSpec((PROFILE, INPUT, OUTPUT))


def batch(xs: list[float], scores: list[float]) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    read = pa.RecordBatch.from_pydict({"x": pa.array(xs, pa.float64())})
    written = pa.RecordBatch.from_pydict({"score": pa.array(scores, pa.float64())})
    return read, written


BATCHES = [batch([-1.0, 3.0], [0.2, 0.9]), batch([12.0], [0.7]), batch([5.0, 7.0], [0.1, 0.6])]


def by_tasks(spec: TaskSpec, per_task: list[list[int]]) -> TaskCounts:
    """Each task counts its batches, is pickled back to the driver and merged (as Spark does)."""
    total = spec.partial()
    for indexes in per_task:
        task = spec.partial()
        for i in indexes:
            task.add(spec, *BATCHES[i])
        total = total.merge(pickle.loads(pickle.dumps(task)), spec)
    return total


def test_counts_merged_from_tasks_equal_one_pass_over_every_batch() -> None:
    one = by_tasks(SPEC, [[0, 1, 2]])
    split = by_tasks(SPEC, [[0], [], [1, 2]])
    assert split.get("input").values(INPUT.metrics) == [5, 2, 12.0]  # -1 and 12 outside [0, 10]
    assert one.get("input").values(INPUT.metrics) == [5, 2, 12.0]  # -1 and 12 outside [0, 10]
    assert split.get("output").values(OUTPUT.metrics) == [0.1]
    for counts in (one, split):
        x = counts.get("profile").columns["x"]
        score = counts.get("profile").columns["score"]
        assert (x.counts.tolist(), x.rows) == ([1, 3, 1], 5)
        assert (score.counts.tolist(), score.rows) == ([2, 3], 5)


def test_a_transformation_engine_keeps_only_retry_tolerant_observers() -> None:
    tolerant = SPEC.retry_tolerant()
    assert tolerant is not None and [o.key for o in tolerant.observers] == ["profile"]
    assert TaskSpec((INPUT, OUTPUT)).retry_tolerant() is None
    assert TaskSpec().empty and TaskSpec().retry_tolerant() is None


def test_extra_columns_are_what_the_observers_read_once_each() -> None:
    twice = MetricsObserver("again", (MetricSpec("max", "x"),), "input", columns=("x", "y"))
    assert TaskSpec((PROFILE, INPUT, twice, OUTPUT)).extra_columns == ("x", "y")
    assert SPEC.partial().get("nothing") is None


def _imported(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_the_scoring_core_imports_no_monitoring_quality_spark_or_pyspark() -> None:
    banned = ("batch_serving.monitoring", "batch_serving.quality", "batch_serving.spark", "pyspark")
    found = {
        f"{path.name}: {module}"
        for path in sorted(SCORING.glob("*.py"))
        for module in _imported(path)
        if module.startswith(banned)
    }
    assert sorted(SCORING.glob("*.py")), SCORING
    assert found == set()
