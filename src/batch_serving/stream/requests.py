"""Asynchronous scoring requests: rows posted to the API become one landing file of the
stream; the stream's sink writes the request's result file once the batch holding it commits.

The file name carries the request id (``req-<32 hex>.<ext>``), so the sink knows which rows
answer which request without any extra column. Files are written under a dot-name and renamed
into the landing directory (Spark ignores dot-files), so the stream never reads half a file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
_REQUEST_FILE = re.compile(r"(?:^|/)req-([0-9a-f]{32})\.(?:json|parquet)$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_of(source_file: str) -> str | None:
    """The request id of a landing file, or None for an ordinary file."""
    match = _REQUEST_FILE.search(source_file)
    return match.group(1) if match else None


def land_request(
    landing: Path, request_id: str, rows: Sequence[dict[str, Any]], schema: pa.Schema, fmt: str
) -> Path:
    """Write ``rows`` (already validated against ``schema``) as one landing file, atomically."""
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / f"req-{request_id}.{fmt}"
    tmp = landing / f".req-{request_id}.{fmt}.tmp"
    if fmt == "json":
        tmp.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows))
    else:
        pq.write_table(pa.Table.from_pylist([_typed(r, schema) for r in rows], schema=schema), tmp)
    os.replace(tmp, target)
    return target


def _typed(row: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """ISO strings -> datetime/date for Parquet's timestamp and date columns."""
    out = dict(row)
    for field in schema:
        value = out.get(field.name)
        if isinstance(value, str) and pa.types.is_timestamp(field.type):
            out[field.name] = dt.datetime.fromisoformat(value)
        elif isinstance(value, str) and pa.types.is_date(field.type):
            out[field.name] = dt.date.fromisoformat(value)
    return out


def is_pending(landing: Path, request_id: str) -> bool:
    return any((landing / f"req-{request_id}.{ext}").exists() for ext in ("json", "parquet"))
