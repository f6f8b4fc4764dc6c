"""Landing files a micro-batch cannot read: found, reported once, never retried.

Spark's file source records each batch's files in its source log (in the checkpoint), so a
file is offered to one batch only. The Parquet source reads each file's footer itself; a
file whose footer cannot be read is poison: logged as an error, reported under
``_stream/<model>/poison/`` and counted in the metrics.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
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


def read_footer(uri: str, batch_id: int) -> pa.Schema | str | None:
    """The file's Arrow schema; or why it cannot be read (poison, logged as an error); or
    None when it is gone (removed after landing: nothing to read, nothing to report)."""
    path = Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)
    try:
        return pq.read_schema(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # any failure to open is the report's content
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        log.error("batch %d: skipped unreadable file %s (%s)", batch_id, uri, reason)
        return reason
