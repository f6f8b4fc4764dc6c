"""Every path the stream writes, under ``stream.output_root`` (default ``output.root``)::

stream_predictions/<model>/ds=YYYY-MM-DD/batch-<batch id>.parquet   (scored rows)
stream_quarantine/<model>/ds=YYYY-MM-DD/batch-<batch id>.parquet    (rows not scored)
_stream/<model>/batches/<batch id>.json      (commit marker: the batch is fully written)
_stream/<model>/requests/<request id>.json   (results of asynchronous API requests)
_stream/<model>/poison/<batch id>-<file>.json  (unreadable landing files, skipped)
_stream/<model>/metrics.prom                 (Prometheus text file of the progress)
_staging/stream/<model>/                     (files being written, renamed into place)
_checkpoints/stream/<model>/                 (Spark's offsets/commits, unless configured)

A batch's rows are committed once its marker exists. Until a crashed batch is replayed, its
files may be in place without a marker: readers take ``committed_files`` (or keep the rows
whose ``batch_id`` has a marker), never a bare listing of the table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_serving.config import JobConfig
from batch_serving.storage import as_location, local_only
from batch_serving.tables.layout import TableLayout

STREAM_PREDICTIONS = "stream_predictions"
STREAM_QUARANTINE = "stream_quarantine"


@dataclass(frozen=True)
class StreamLayout:
    root: Path
    model: str
    checkpoint: Path

    @classmethod
    def for_job(cls, cfg: JobConfig) -> StreamLayout:
        stream = cfg.stream
        root = Path((stream.output_root if stream else None) or cfg.output.root)
        ckpt = stream.checkpoint if stream and stream.checkpoint else None
        model = cfg.model.name
        return cls(root, model, Path(ckpt) if ckpt else root / "_checkpoints" / "stream" / model)

    @property
    def predictions(self) -> TableLayout:
        return TableLayout(as_location(self.root), STREAM_PREDICTIONS, self.model)

    @property
    def quarantine(self) -> TableLayout:
        return TableLayout(as_location(self.root), STREAM_QUARANTINE, self.model)

    @property
    def state_dir(self) -> Path:
        return self.root / "_stream" / self.model

    @property
    def staging_dir(self) -> Path:
        return self.root / "_staging" / "stream" / self.model

    def batch_file(self, table: TableLayout, day: dt.date, batch_id: int) -> Path:
        """Deterministic per (batch, date): a replayed batch overwrites, never duplicates."""
        folder = local_only(table.partition_dir(day), "the stream's output")
        return folder / f"batch-{batch_id:012d}.parquet"

    def marker(self, batch_id: int) -> Path:
        return self.state_dir / "batches" / f"{batch_id:012d}.json"

    def request_result(self, request_id: str) -> Path:
        return self.state_dir / "requests" / f"{request_id}.json"

    def poison_report(self, batch_id: int, file_name: str) -> Path:
        return self.state_dir / "poison" / f"{batch_id:012d}-{file_name}.json"

    @property
    def metrics_file(self) -> Path:
        return self.state_dir / "metrics.prom"

    def committed_batches(self) -> list[int]:
        folder = self.state_dir / "batches"
        return sorted(int(p.stem) for p in folder.glob("*.json")) if folder.is_dir() else []

    def committed_files(self, table: TableLayout) -> list[Path]:
        """The table's files whose batch has a marker: what a reader may read. A batch cut
        short by a crash has files but no marker until its replay rewrites it."""
        done = set(self.committed_batches())
        folder = local_only(table.table_dir, "the stream's output")
        files = sorted(folder.glob("ds=*/batch-*.parquet"))
        return [f for f in files if int(f.stem.removeprefix("batch-")) in done]


def write_json_atomic(path: Path, payload: Any) -> None:
    """tmp file + rename: a reader (or a restarted stream) sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, default=str, sort_keys=True))
    os.replace(tmp, path)
