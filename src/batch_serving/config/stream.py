"""The ``stream:`` section of a job file: micro-batch scoring of a landing directory.

Kept apart from ``sections.py`` (the batch job's sections); the same rules apply: each field's
docstring is its description in the configuration reference and the JSON Schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from batch_serving.config.paths import overlap
from batch_serving.config.sections import Frozen


class StreamConfig(Frozen):
    """Streaming micro-batch scoring (``batch-serving stream``): the same scoring core driven by
    Spark Structured Streaming over a landing directory (or the rate source, for load tests)."""

    source: Literal["files", "rate"] = "files"
    """`files`: new Parquet/JSON files landing in `path`; `rate`: synthetic rows (load tests)."""
    path: str | None = None
    """Landing directory watched for new files (`files` source); API scoring requests land here."""
    format: Literal["parquet", "json"] = "parquet"
    """Format of the landing files (`json`: one JSON object per line)."""
    columns: str = Field(min_length=1)
    """Columns of the events as Spark DDL, e.g. `customer_id BIGINT, tenure_months BIGINT`
    (a stream cannot infer them safely; the API validates requests against them)."""
    event_time_column: str | None = None
    """Timestamp column giving each event's time; `null`: the file's landing (modification) time."""
    checkpoint: str | None = None
    """Checkpoint directory (offsets and commits); `null`:
    `<output_root>/_checkpoints/stream/<model>`."""
    output_root: str | None = None
    """Root of `stream_predictions/<model>/ds=YYYY-MM-DD/` and `stream_quarantine/...`;
    `null`: `output.root`."""
    trigger_seconds: float = Field(default=1.0, ge=0)
    """Micro-batch trigger interval in seconds (0: start the next batch as soon as one ends)."""
    max_files_per_trigger: int = Field(default=100, ge=1)
    """Most new files one micro-batch takes (bounds batch size and latency under a backlog)."""
    rows_per_second: int = Field(default=1000, ge=1)
    """`rate` source: rows generated per second."""
    clean_source: Literal["off", "archive", "delete"] = "off"
    """What happens to a landing file once its batch is committed (Spark's `cleanSource`):
    `off` keeps it (the landing directory grows), `archive` moves it under `archive_dir`
    (keeping its path), `delete` removes it. Scored rows and request results are already
    written by then."""
    archive_dir: str | None = None
    """Where `clean_source: archive` moves landed files; outside the landing directory."""

    @model_validator(mode="after")
    def _files_need_path(self) -> StreamConfig:
        if self.source == "files" and not self.path:
            raise ValueError("stream.source files needs `path` (the landing directory)")
        if self.clean_source == "archive":
            if not self.archive_dir:
                raise ValueError("stream.clean_source archive needs `archive_dir`")
            relation = overlap(self.archive_dir, self.path) if self.path else None
            if relation is not None:
                raise ValueError(
                    f"stream.archive_dir {self.archive_dir} {relation} the landing directory "
                    f"{self.path}: they must not contain each other"
                )
        return self
