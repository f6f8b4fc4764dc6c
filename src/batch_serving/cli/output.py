"""What a command prints on stdout: its text summary, or with ``--json`` one JSON object and
nothing else (anything printed while the command runs goes to stderr), so that
``batch-serving score --json ... | jq .manifest.output.rows`` works."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batch_serving.runs.job import RunResult


@contextmanager
def stdout_reserved(as_json: bool) -> Iterator[None]:
    """With ``--json``, stray prints of the command (or a library) go to stderr."""
    if not as_json:
        yield
        return
    with redirect_stdout(sys.stderr):
        yield


def emit(as_json: bool, record: Mapping[str, Any], lines: Sequence[str]) -> None:
    """The JSON record (sorted keys, stable names) or the text lines, on stdout."""
    if as_json:
        sys.stdout.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()


def score_record(result: RunResult) -> dict[str, Any]:
    """``score --json``: the committed manifest as written beside the partition, and the run's
    after-commit record (SQL tables, MLflow run, every step's duration)."""
    return {
        "manifest": result.manifest.model_dump(mode="json"),
        "after_commit": result.after.model_dump(mode="json"),
    }
