"""One micro-batch -> files, exactly once: the ``foreachBatch`` function of the stream.

Idempotent by batch id. Every output file's name is fixed by (batch id, date), each is written
to staging and renamed into place, and the batch's marker is written last. A batch whose
marker exists is skipped, so Spark replaying it after a crash (between our marker and its own
commit log) adds nothing; a batch that died before its marker is written again under the same
names, replacing any part that had landed. Either way every event is in the table once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame

from batch_serving.config import StreamConfig
from batch_serving.scoring.plan import ERROR_CLASS, ERROR_MESSAGE, ScoringPlan
from batch_serving.spark import errors
from batch_serving.spark.delivery import ModelHandle
from batch_serving.spark.engines.dataframe import score_frame
from batch_serving.stream.layout import StreamLayout, write_json_atomic
from batch_serving.stream.metrics import BatchStats, StreamMetrics
from batch_serving.stream.poison import find_poison
from batch_serving.stream.requests import request_id_of
from batch_serving.stream.source import CORRUPT, EVENT_TIME, SOURCE_FILE
from batch_serving.tables.layout import TableLayout

log = logging.getLogger(__name__)
BATCH_ID = "batch_id"
MALFORMED = "malformed_record"


@dataclass
class StreamSink:
    """Scores a micro-batch with the plan fixed at stream start and writes it idempotently."""

    plan: ScoringPlan
    handles: list[ModelHandle]
    layout: StreamLayout
    cfg: StreamConfig
    metrics: StreamMetrics
    stream_run_id: str
    active: int | None = None  # the batch being written right now (for a graceful stop)

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        self.active = batch_id
        try:
            self._batch(frame, batch_id)
        finally:
            self.active = None

    def _batch(self, frame: DataFrame, batch_id: int) -> None:
        if self.layout.marker(batch_id).exists():
            log.info("batch %d already committed (replayed after a restart): skipped", batch_id)
            self.metrics.record_batch(BatchStats(batch_id, 0, 0, 0, 0.0, None, None, None, True))
            return
        start = time.perf_counter()
        now = dt.datetime.now(dt.UTC)
        plan = replace(self.plan, scored_at=now, run_id=f"{self.stream_run_id}-b{batch_id}")
        # many small landed files would each be a task (and a Python worker round trip)
        tasks = frame.sparkSession.sparkContext.defaultParallelism
        scored = score_frame(frame.coalesce(tasks), plan, self.handles)
        table = errors.scoring(scored.toArrow, self.layout.staging_dir)
        good, bad = split(table, plan)
        written = self._write(good, self.layout.predictions, batch_id, plan.output_schema)
        written += self._write(bad, self.layout.quarantine, batch_id, plan.quarantine_schema)
        requests = self._answer_requests(good, bad, batch_id)
        seen = set(table.column(SOURCE_FILE).unique().to_pylist()) if table.num_rows else set()
        poison = self._report_poison(batch_id, seen)
        committed = dt.datetime.now(dt.UTC)
        latency = latencies(good, bad, committed)
        stats = BatchStats(
            batch_id,
            good.num_rows,
            bad.num_rows,
            len(poison),
            round(time.perf_counter() - start, 3),
            *latency,
        )
        write_json_atomic(
            self.layout.marker(batch_id),
            {
                "batch_id": batch_id,
                "stream_run_id": self.stream_run_id,
                "committed_at": committed.isoformat(),
                "scored_rows": good.num_rows,
                "quarantined_rows": bad.num_rows,
                "files": [str(p) for p in written],
                "requests": requests,
                "poison_files": poison,
                "latency_p50_s": latency[0],
                "latency_p99_s": latency[1],
            },
        )
        self.metrics.record_batch(stats)

    def _write(
        self, rows: pa.Table, table: TableLayout, batch_id: int, schema: pa.Schema
    ) -> list[Path]:
        """One file per event date, staged then renamed onto its deterministic name."""
        if not rows.num_rows:
            return []
        columns = [n for n in schema.names if n != CORRUPT]
        rows = rows.select(columns).append_column(
            BATCH_ID, pa.array(np.full(rows.num_rows, batch_id, dtype=np.int64))
        )
        today = dt.datetime.now(dt.UTC).date()  # an event without a time counts as today's
        days = pc.fill_null(pc.cast(rows.column(EVENT_TIME), pa.date32()), today)
        written = []
        self.layout.staging_dir.mkdir(parents=True, exist_ok=True)
        for day in days.unique().to_pylist():
            part = rows.filter(pc.equal(days, pa.scalar(day, pa.date32())))
            target = self.layout.batch_file(table, day, batch_id)
            staged = self.layout.staging_dir / f"{table.table}-{target.parent.name}-{target.name}"
            pq.write_table(part, staged)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            written.append(target)
        return written

    def _answer_requests(self, good: pa.Table, bad: pa.Table, batch_id: int) -> list[str]:
        """Write each API request's result file (its scored and quarantined rows)."""
        answered = []
        for source in set(good.column(SOURCE_FILE).to_pylist()) | set(
            bad.column(SOURCE_FILE).to_pylist()
        ):
            request_id = request_id_of(source)
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

    def _report_poison(self, batch_id: int, seen: set[str]) -> dict[str, str]:
        if self.cfg.source != "files":
            return {}
        poison = find_poison(self.layout.checkpoint, batch_id, seen, self.cfg.format)
        for uri, reason in poison.items():
            name = uri.rsplit("/", 1)[-1]
            report = {"batch_id": batch_id, "file": uri, "reason": reason, "action": "skipped"}
            write_json_atomic(self.layout.poison_report(batch_id, name), report)
        return poison


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


def latencies(
    good: pa.Table, bad: pa.Table, committed: dt.datetime
) -> tuple[float | None, float | None, float | None]:
    """Seconds from each event's time (landing time by default) to the batch's commit:
    p50, p99, max."""
    times = [t.column(EVENT_TIME) for t in (good, bad) if t.num_rows]
    if not times:
        return None, None, None
    micros = np.concatenate(
        [
            pc.cast(pc.cast(t, pa.timestamp("us", tz="UTC")), pa.int64()).to_numpy(False)
            for t in times
        ]
    ).astype(np.float64)
    ages = committed.timestamp() - micros / 1e6
    ages = ages[~np.isnan(ages)]
    if not len(ages):
        return None, None, None
    p50, p99 = np.percentile(ages, [50, 99])
    return round(float(p50), 3), round(float(p99), 3), round(float(ages.max()), 3)


def _rows_of(rows: pa.Table, source: str) -> list[dict[str, Any]]:
    picked = rows.filter(pc.equal(rows.column(SOURCE_FILE), source))
    drop = [c for c in (SOURCE_FILE, CORRUPT) if c in picked.column_names]
    return picked.drop_columns(drop).to_pylist()
