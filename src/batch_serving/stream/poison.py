"""Landing files a micro-batch could not read: found, reported once, never retried.

Spark skips an unreadable Parquet file (``ignoreCorruptFiles``) and still records it in the
batch's source log, so it is never offered again. The sink compares that log with the files
that produced rows; a file with no rows that pyarrow cannot open either is poison: it is
logged as an error, reported under ``_stream/<model>/poison/`` and counted in the metrics.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow.parquet as pq

log = logging.getLogger(__name__)


def batch_files(checkpoint: Path, batch_id: int) -> list[str]:
    """Paths (URIs) of the files the file source assigned to ``batch_id``.

    Spark's log has one file per batch, compacted every few batches into ``<id>.compact``
    (holding the earlier batches too); entries carry their batch id."""
    folder = checkpoint / "sources" / "0"
    for name in (str(batch_id), f"{batch_id}.compact"):
        path = folder / name
        if path.is_file():
            entries = [json.loads(x) for x in path.read_text().splitlines()[1:] if x.strip()]
            return [e["path"] for e in entries if e.get("batchId") == batch_id]
    return []


def unreadable_reason(uri: str, fmt: str) -> str | None:
    """Why ``uri`` cannot be read, or None if it can (an empty file is not poison)."""
    path = Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)
    if not path.exists():
        return None  # removed after landing: nothing to read, nothing to report
    if fmt != "parquet":
        return None  # JSON: malformed lines arrive as rows and are quarantined
    try:
        pq.read_metadata(path)
    except Exception as exc:  # any failure to open is the report's content
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def find_poison(checkpoint: Path, batch_id: int, seen: set[str], fmt: str) -> dict[str, str]:
    """{file uri: reason} for this batch's files that produced no row and cannot be read."""
    found = {}
    for uri in batch_files(checkpoint, batch_id):
        if uri in seen:
            continue
        reason = unreadable_reason(uri, fmt)
        if reason is not None:
            log.error("batch %d: skipped unreadable file %s (%s)", batch_id, uri, reason)
            found[uri] = reason
    return found
