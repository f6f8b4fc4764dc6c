"""Where a micro-batch's rows go: the ``StreamSink`` seam and its file implementation.

Exactly once, by batch id. Every output file's name is fixed by (batch id, date), each is
written to staging and renamed into place, and the batch's marker is written last. A batch
whose marker exists is skipped, so Spark replaying it after a crash (between our marker and
its own commit log) adds nothing; a batch that died before its marker is written again under
the same names, replacing any part that had landed. Either way every event is in the table
once.

Readers: between a crash and the restart that replays it, a batch's files can be in place
without its marker. Only rows whose ``batch_id`` has a marker are committed;
``StreamLayout.committed_files`` lists exactly those files. ``KafkaSink`` (``kafka_sink``) is
another class with the same methods (a Kafka transaction per batch, its marker inside it);
``Sinks`` writes a batch to several sinks, each exactly once on its own.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_serving.config import StreamConfig
from batch_serving.stream.layout import StreamLayout, write_json_atomic
from batch_serving.stream.source import CORRUPT, EVENT_TIME
from batch_serving.tables.layout import TableLayout

BATCH_ID = "batch_id"


class StreamSink(Protocol):
    """Writes a micro-batch's scored and quarantined rows, then marks the batch committed."""

    def committed(self, batch_id: int) -> bool:
        """The batch was fully written before (a replay after a restart): skip it."""
        ...

    def write(self, batch_id: int, scored: pa.Table, quarantined: pa.Table) -> list[str]:
        """Write both tables idempotently (a rewrite of the batch replaces, never adds);
        returns what was written."""
        ...

    def commit(self, batch_id: int, record: dict[str, Any]) -> None:
        """Make the batch's rows committed, last; ``record`` says what it held."""
        ...

    def close(self) -> None:
        """Release connections when the stream ends."""
        ...


def sink_for(cfg: StreamConfig, layout: StreamLayout, key_columns: Sequence[str]) -> StreamSink:
    """The sink(s) of ``stream.sink``: ``table`` (the Parquet tables), ``kafka`` (a topic)."""
    sinks: list[StreamSink] = []
    for name in cfg.sink:
        if name == "kafka":
            from batch_serving.stream.kafka_sink import KafkaSink  # it builds on this module

            assert cfg.kafka is not None  # StreamConfig refuses sink kafka without it
            sinks.append(KafkaSink(cfg.kafka, layout.checkpoint, list(key_columns)))
        else:
            sinks.append(FileSink(layout))
    return sinks[0] if len(sinks) == 1 else Sinks(tuple(sinks))


@dataclass(frozen=True)
class Sinks:
    """Several sinks, each exactly once on its own: a batch goes to the sinks that have not
    committed it (a crash between two sinks' commits replays it into the others only)."""

    sinks: tuple[StreamSink, ...]

    def committed(self, batch_id: int) -> bool:
        return all(s.committed(batch_id) for s in self.sinks)

    def write(self, batch_id: int, scored: pa.Table, quarantined: pa.Table) -> list[str]:
        return [w for s in self._pending(batch_id) for w in s.write(batch_id, scored, quarantined)]

    def commit(self, batch_id: int, record: dict[str, Any]) -> None:
        for sink in self._pending(batch_id):
            sink.commit(batch_id, record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def _pending(self, batch_id: int) -> list[StreamSink]:
        return [s for s in self.sinks if not s.committed(batch_id)]


@dataclass(frozen=True)
class FileSink:
    """``stream_predictions``/``stream_quarantine`` Parquet files, one per (batch, event date),
    and the marker ``_stream/<model>/batches/<id>.json``."""

    layout: StreamLayout

    def committed(self, batch_id: int) -> bool:
        return self.layout.marker(batch_id).exists()

    def write(self, batch_id: int, scored: pa.Table, quarantined: pa.Table) -> list[str]:
        written = self._write(scored, self.layout.predictions, batch_id)
        written += self._write(quarantined, self.layout.quarantine, batch_id)
        return [str(p) for p in written]

    def commit(self, batch_id: int, record: dict[str, Any]) -> None:
        write_json_atomic(self.layout.marker(batch_id), record)

    def close(self) -> None:
        pass

    def _write(self, rows: pa.Table, table: TableLayout, batch_id: int) -> list[Path]:
        """One file per event date, staged then renamed onto its deterministic name."""
        if not rows.num_rows:
            return []
        columns = [n for n in rows.column_names if n != CORRUPT]
        rows = rows.select(columns).append_column(
            BATCH_ID, pa.array(np.full(rows.num_rows, batch_id, dtype=np.int64))
        )
        today = dt.datetime.now(dt.UTC).date()  # an event without a time counts as today's
        days = pc.fill_null(pc.cast(rows.column(EVENT_TIME), pa.date32()), today)
        written = []
        staging = self.layout.staging_dir
        staging.mkdir(parents=True, exist_ok=True)
        for day in days.unique().to_pylist():
            part = rows.filter(pc.equal(days, pa.scalar(day, pa.date32())))
            target = self.layout.batch_file(table, day, batch_id)
            staged = staging / f"{table.table}-{target.parent.name}-{target.name}"
            pq.write_table(part, staged)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            written.append(target)
        return written
