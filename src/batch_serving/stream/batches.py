"""One micro-batch, start to commit: the ``foreachBatch`` function of the stream.

It reads like a batch run: the source's parts -> checked by the batch's rules (``validate``)
-> scored by the core -> split into scored and quarantined rows -> written by the sink ->
request results and poison reports -> the sink's commit (last) -> metrics. Every landed row
ends up scored, quarantined (with the reason) or in a poison report (an unreadable file). A
cascade's evidence is counted from the split rows (read only: the scores are not touched).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from batch_serving.scoring.batch import BatchScorer, tagged
from batch_serving.scoring.cascade_check import batch_counts, evidence_of
from batch_serving.scoring.plan import ERROR_CLASS, ERROR_MESSAGE, ScoringPlan
from batch_serving.spark import errors
from batch_serving.spark.connect import default_parallelism
from batch_serving.spark.delivery import ModelHandle
from batch_serving.spark.engines.dataframe import score_frame
from batch_serving.stream.layout import StreamLayout, write_json_atomic
from batch_serving.stream.metrics import BatchStats, StreamMetrics, evidence_record
from batch_serving.stream.requests import request_id_of
from batch_serving.stream.sink import StreamSink
from batch_serving.stream.source import (
    CORRUPT,
    EVENT_TIME,
    SOURCE_FILE,
    BatchPart,
    RowsPart,
    StreamSource,
)
from batch_serving.stream.validate import Planner, check_part, refused_rows

log = logging.getLogger(__name__)
MALFORMED = "malformed_record"


@dataclass
class BatchHandler:
    """Scores each micro-batch with the plan fixed at stream start (re-planned for a part of
    other column types) and hands it to the sink."""

    plan: ScoringPlan
    declared: pa.Schema  # the stream's columns as Spark reads them
    planner: Planner
    handles: list[ModelHandle]
    source: StreamSource
    sink: StreamSink
    layout: StreamLayout
    metrics: StreamMetrics
    stream_run_id: str
    active: int | None = None  # the batch being written right now (for a graceful stop)
    done: int | None = None  # the newest batch this process committed or found committed

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        self.active = batch_id
        try:
            self._batch(frame, batch_id)
            self.done = batch_id
        finally:
            self.active = None

    def finished(self, batch_id: int) -> bool:
        """Batch ``batch_id`` is committed by every sink (this process saw it through)."""
        return self.done is not None and self.done >= batch_id

    def _batch(self, frame: DataFrame, batch_id: int) -> None:
        if self.sink.committed(batch_id):
            log.info("batch %d already committed (replayed after a restart): skipped", batch_id)
            self.metrics.record_batch(BatchStats(batch_id, 0, 0, 0, 0.0, skipped=True))
            return
        clock = StepClock()
        now = dt.datetime.now(dt.UTC)
        plan = replace(self.plan, scored_at=now, run_id=f"{self.stream_run_id}-b{batch_id}")
        batch = self.source.batch_input(frame, batch_id, plan.input_columns)
        clock.lap("parts")
        table = _concat([self._score(part, plan) for part in batch.parts], plan.tagged_schema)
        clock.lap("score")
        good, bad = split(table, plan)
        clock.lap("split")
        written = self.sink.write(batch_id, good, bad)
        clock.lap("write")
        requests = self._answer_requests(good, bad, batch_id)
        self._report_poison(batch_id, batch.poison)
        committed = dt.datetime.now(dt.UTC)
        cascade = batch_counts(plan, good, bad) if plan.cascade is not None else None
        stats = BatchStats(
            batch_id,
            good.num_rows,
            bad.num_rows,
            len(batch.poison),
            0.0,
            event_ages(good, bad, committed),
            cascade=cascade,
            steps=clock.steps,
        )
        record = {
            "batch_id": batch_id,
            "stream_run_id": self.stream_run_id,
            "committed_at": committed.isoformat(),
            "scored_rows": good.num_rows,
            "quarantined_rows": bad.num_rows,
            "files": written,
            "requests": requests,
            "poison_files": batch.poison,
        }
        if cascade is not None:
            record["cascade"] = evidence_record(evidence_of(plan, cascade))
        clock.lap("record")
        self.sink.commit(batch_id, record | stats.latency_record())
        clock.lap("commit")
        stats.write_seconds = clock.seconds()
        self.metrics.record_batch(stats)

    def _score(self, part: BatchPart | RowsPart, plan: ScoringPlan) -> pa.Table:
        """One part's rows in ``plan.tagged_schema``: scored, or all quarantined when the
        part fails the batch's column checks."""
        if isinstance(part, RowsPart):
            return score_rows(part.rows.select(plan.input_columns), plan, self.handles)
        checked = check_part(part, plan, self.declared, self.planner)
        if checked.plan is None:
            assert checked.error is not None
            log.warning("quarantining the rows of %s: %s", part.where, checked.error)
            return refused_rows(checked.frame, plan, checked.error, plan.scored_at)
        own = replace(checked.plan, scored_at=plan.scored_at, run_id=plan.run_id)
        # many small landed files would each be a task (and a Python worker round trip)
        tasks = default_parallelism(checked.frame.sparkSession)
        selected = checked.frame.select(*own.input_columns).coalesce(tasks)
        scored = score_frame(selected, own, self.handles)
        return errors.scoring(scored.toArrow, self.layout.staging_dir)

    def _answer_requests(self, good: pa.Table, bad: pa.Table, batch_id: int) -> list[str]:
        """Write each API request's result file (its scored and quarantined rows)."""
        answered = []
        for source in set(good.column(SOURCE_FILE).to_pylist()) | set(
            bad.column(SOURCE_FILE).to_pylist()
        ):
            request_id = request_id_of(source or "")
            if request_id is None:
                continue
            write_json_atomic(
                self.layout.request_result(request_id),
                {
                    "request_id": request_id,
                    "batch_id": batch_id,
                    "predictions": _rows_of(good, source),
                    "quarantined": _rows_of(bad, source),
                },
            )
            answered.append(request_id)
        return answered

    def _report_poison(self, batch_id: int, poison: dict[str, str]) -> None:
        for uri, reason in poison.items():
            name = uri.rsplit("/", 1)[-1]
            report = {"batch_id": batch_id, "file": uri, "reason": reason, "action": "skipped"}
            write_json_atomic(self.layout.poison_report(batch_id, name), report)


def score_rows(rows: pa.Table, plan: ScoringPlan, handles: list[ModelHandle]) -> pa.Table:
    """Rows already on the driver (of the plan's input columns and types), scored there by
    the Arrow core: what ``score_frame`` does in a Python worker, without the job."""
    scorer = BatchScorer(plan, [h.get() for h in handles])
    batches = [
        b for batch in rows.to_batches() for b in tagged(scorer.score(batch), plan.tagged_schema)
    ]
    return pa.Table.from_batches(batches, schema=plan.tagged_schema)


class StepClock:
    """Milliseconds of a batch's steps, each from the previous lap (the batch's log line)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.steps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.steps[name] = round((now - self.last) * 1000, 1)
        self.last = now

    def seconds(self) -> float:
        """From the start to the last lap."""
        return self.last - self.start


def split(table: pa.Table, plan: ScoringPlan) -> tuple[pa.Table, pa.Table]:
    """(scored rows, quarantined rows); a malformed JSON line is quarantined whatever the
    model made of its nulls."""
    bad_mask = pc.is_valid(table.column(ERROR_CLASS))
    if CORRUPT in table.column_names:
        corrupt = pc.is_valid(table.column(CORRUPT))
        bad_mask = pc.or_(bad_mask, corrupt)
        error_class = pc.if_else(corrupt, pa.scalar(MALFORMED), table.column(ERROR_CLASS))
        message = pc.if_else(
            corrupt,
            pc.binary_join_element_wise(
                "malformed record: ", pc.utf8_slice_codeunits(table.column(CORRUPT), 0, 200), ""
            ),
            table.column(ERROR_MESSAGE),
        )
        table = table.set_column(
            table.schema.get_field_index(ERROR_CLASS), ERROR_CLASS, error_class
        )
        table = table.set_column(
            table.schema.get_field_index(ERROR_MESSAGE), ERROR_MESSAGE, message
        )
    good = table.filter(pc.invert(bad_mask)).select(plan.output_schema.names)
    bad = table.filter(bad_mask).select(plan.quarantine_schema.names)
    return good, bad


def event_ages(good: pa.Table, bad: pa.Table, committed: dt.datetime) -> np.ndarray:
    """Seconds from each event's time (landing time by default) to the batch's commit."""
    micros = [
        pc.cast(pc.cast(t.column(EVENT_TIME), pa.timestamp("us", tz="UTC")), pa.int64())
        .to_numpy(zero_copy_only=False)
        .astype(np.float64)
        for t in (good, bad)
        if t.num_rows
    ]
    if not micros:
        return np.empty(0)
    ages = committed.timestamp() - np.concatenate(micros) / 1e6
    return ages[~np.isnan(ages)]


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The parts' rows as one table (every part conforms to the plan's tagged schema)."""
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([t.cast(schema) for t in tables])


def _rows_of(rows: pa.Table, source: str) -> list[dict[str, Any]]:
    picked = rows.filter(pc.equal(rows.column(SOURCE_FILE), source))
    drop = [c for c in (SOURCE_FILE, CORRUPT) if c in picked.column_names]
    return picked.drop_columns(drop).to_pylist()
