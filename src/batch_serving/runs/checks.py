"""The run's checks around the scoring call: planned before it, counted by its tasks, judged after.

Like MLServer's ``DataPlane.infer`` wrapping ``model.predict`` in its metrics and caches, the
data-quality gates, the deferred duplicate-id scan and drift are one object around
``engine.stage``, so the run itself reads as a straight line:

* ``before_scoring``: plan the input and output gates and the drift profile; an input gate the
  scoring tasks cannot count is evaluated right away (nothing to wait for: a failure stops the
  run before scoring). Returns what the tasks count (``TaskSpec``: one observer each).
* ``after_scoring``: with the tasks' counts, finish what waited for them: the duplicate-id scan
  left to run beside the tasks, then the input gate.
* ``finish_drift``: counts -> profile, drift and its gate (the run calls it while reconciling).
* ``before_commit``: the output gate, on the counts or the staged output.
* ``record``: the drift section of the manifest.

Each phase times itself under its step name, so a gate planned before scoring and judged after
it adds up under one name (``gate_input``, ``gate_output``), as does ``validate``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from batch_serving.config import ExpectationConfig
from batch_serving.errors import BatchServingError, InputValidationError, OutputValidationError
from batch_serving.quality.gates import GateRunner, PlannedGate
from batch_serving.runs.context import RunContext
from batch_serving.runs.monitor import Drift, Monitoring, finish_monitoring, plan_monitoring
from batch_serving.runs.steps import Validated, finish_duplicate_scan, gate_runner
from batch_serving.scoring.observers import TaskCounts, TaskObserver, TaskSpec
from batch_serving.spark.connectors import require_scheme
from batch_serving.spark.engines import Engine, InputData
from batch_serving.storage import spark_path
from batch_serving.tables.manifest import RunManifest


@dataclass
class RunChecks:
    """One run's gates and drift, from planning to the manifest (see the module docstring)."""

    spark: SparkSession
    run: RunContext
    engine: Engine
    data: InputData
    valid: Validated
    gates: GateRunner
    input_gate: PlannedGate | None = None  # set when its verdict waits for the tasks' counts
    output_gate: PlannedGate | None = None
    monitoring: Monitoring | None = None
    counted: TaskCounts | None = None
    drift: Drift | None = None

    @classmethod
    def start(
        cls, spark: SparkSession, run: RunContext, engine: Engine, data: InputData, valid: Validated
    ) -> RunChecks:
        return cls(spark, run, engine, data, valid, gate_runner(run))

    def before_scoring(self) -> TaskSpec:
        """Plan the gates and the drift profile; what the scoring tasks count for them."""
        self.input_gate = self._plan_input_gate()
        with self._gate_step("output"):
            self.output_gate = self.gates.plan(
                "output", self._declared("output"), self._task_schema(self.valid.plan.output_schema)
            )
        if self.run.cfg.monitoring.enabled:
            with self.run.timer.step("drift_reference"):
                self.monitoring = plan_monitoring(
                    self.spark, self.run, self.engine, self.data, self.valid.plan
                )
        observers: list[TaskObserver[Any] | None] = [
            self.monitoring.observer() if self.monitoring is not None else None,
            self.input_gate.observer() if self.input_gate is not None else None,
            self.output_gate.observer() if self.output_gate is not None else None,
        ]
        return TaskSpec(tuple(o for o in observers if o is not None))

    def after_scoring(self, counted: TaskCounts | None) -> None:
        """The duplicate-id scan left to finish beside the tasks, then the input gate."""
        self.counted = counted
        if self.valid.pending is not None:
            with self.run.timer.step("validate"):
                finish_duplicate_scan(self.valid, self.data)
        if self.input_gate is not None:
            with self.run.timer.step("gate_input"):
                self._finish_input(self.input_gate)

    def finish_drift(self) -> None:
        """The run's profile, its drift against the references and the drift gate's outcome
        (warnings only; blocking is publish's job), written beside the staged manifest."""
        if self.monitoring is not None:
            counts = self._counts(self.monitoring.observer().key)
            self.drift = finish_monitoring(self.monitoring, counts, self.run)

    def before_commit(self) -> None:
        """The output gate: a failure leaves nothing committed (the staged output is dropped)."""
        gate, run = self.output_gate, self.run
        if gate is None:
            return
        with run.timer.step("gate_output"):
            where = str(run.predictions.partition_dir(run.run_date))
            self._finish(gate, OutputValidationError, self._staged_frame, where)

    def record(self, manifest: RunManifest) -> RunManifest:
        """``manifest`` with the drift section, when the run monitors drift."""
        if self.drift is None:
            return manifest
        return manifest.model_copy(update={"drift": self.drift.section})

    def _plan_input_gate(self) -> PlannedGate | None:
        """The input gate if the scoring tasks count (part of) it; otherwise it is evaluated
        now and None is returned."""
        with self._gate_step("input"):
            gate = self.gates.plan("input", self._declared("input"), self._task_schema())
            if gate is None or gate.counted_in_task:
                return gate
            self._finish_input(gate)
            return None

    def _finish_input(self, gate: PlannedGate) -> None:
        self._finish(gate, InputValidationError, self._input_frame, self.data.where)

    def _finish(
        self,
        gate: PlannedGate,
        error: type[BatchServingError],
        frame: Callable[[], DataFrame],
        where: str,
    ) -> None:
        """GX's verdict from the tasks' counts (the observer's key is the gate's name) and,
        for what they did not count, ``frame()``; raises ``error`` if the gate fails."""
        self.gates.finish(gate, self._counts(gate.name), frame, error, where)

    def _declared(self, gate: str) -> tuple[ExpectationConfig, ...]:
        checks = self.run.cfg.validation
        return checks.input_expectations if gate == "input" else checks.output_expectations

    def _gate_step(self, gate: str) -> AbstractContextManager[None]:
        """The gate's step, timed only when the job declares expectations for it."""
        return self.run.timer.step(f"gate_{gate}") if self._declared(gate) else nullcontext()

    def _task_schema(self, schema: pa.Schema | None = None) -> pa.Schema | None:
        """What the scoring tasks see (the input by default), when they can count gate metrics
        (an engine whose per-task counts are exact); None: the gates query Spark."""
        if not self.engine.exact_counts:
            return None
        return schema if schema is not None else self.data.schema

    def _counts(self, key: str) -> Any:
        return self.counted.get(key) if self.counted is not None else None

    def _input_frame(self) -> DataFrame:
        return self.engine.frame(self.spark, self.data)

    def _staged_frame(self) -> DataFrame:
        require_scheme(self.spark, self.run.cfg.output.root, "output expectations on")
        return self.spark.read.parquet(spark_path(self.run.staging.predictions))
