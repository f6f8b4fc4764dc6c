"""What a command prints on stdout: its text summary, or with ``--json`` one JSON object and
nothing else (anything printed while the command runs goes to stderr), so that
``batch-serving score --json ... | jq .manifest.output.rows`` works. ``main`` reserves stdout
around every command given ``--json``; the command ends with ``emit``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from batch_serving.runs.job import RunResult
    from batch_serving.serving.publish import Published

# The real stdout while a --json command runs with sys.stdout pointed at stderr.
_RESULT_STREAM: ContextVar[TextIO | None] = ContextVar("result_stream", default=None)


@contextmanager
def stdout_reserved(as_json: bool) -> Iterator[None]:
    """With ``--json``, stray prints of the command (or a library) go to stderr, and only
    ``emit`` writes to stdout. Nested use is a no-op."""
    if not as_json or _RESULT_STREAM.get() is not None:
        yield
        return
    token = _RESULT_STREAM.set(sys.stdout)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _RESULT_STREAM.reset(token)


def emit(as_json: bool, record: Mapping[str, Any], lines: Sequence[str]) -> None:
    """The JSON record (sorted keys, stable names) or the text lines, on stdout."""
    out = _RESULT_STREAM.get() or sys.stdout
    if as_json:
        out.write(json.dumps(record, indent=2, sort_keys=True, default=_json_value) + "\n")
    else:
        out.write("".join(f"{line}\n" for line in lines))
    out.flush()


def _json_value(value: object) -> object:
    """Values JSON has no type for (dates and decimals of ``sql`` rows, paths): ISO dates,
    numbers, and text for anything else."""
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return str(value)


def score_record(result: RunResult) -> dict[str, Any]:
    """``score --json``: the committed manifest as written beside the partition, and the run's
    after-commit record (SQL tables, MLflow run, every step's duration)."""
    return {
        "manifest": result.manifest.model_dump(mode="json"),
        "after_commit": result.after.model_dump(mode="json"),
    }


def published_record(done: Published) -> dict[str, Any]:
    """``publish --json`` (and a backfill's or the demo's publish): the snapshot made current,
    the one before it, the backends written and why nothing changed, if so."""
    return {**dataclasses.asdict(done), "path": str(done.path), "backends": list(done.backends)}
