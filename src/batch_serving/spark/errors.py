"""Spark failures as our exceptions: a message that names the file or the Python error, never a
bare Py4J/JVM wrapper line."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from batch_serving.errors import BatchServingError, ScoringError, StorageError, first_line

T = TypeVar("T")
_PARQUET_PATH = re.compile(r"(?:file:)?(/[^\s'\"\]\[,]+\.parquet)")


def reading(action: Callable[[], T], where: str) -> T:
    """Run a Spark action over the input; an unreadable file becomes a StorageError naming it."""
    try:
        return action()
    except BatchServingError:
        raise
    except Exception as exc:
        text = str(exc)
        match = _PARQUET_PATH.search(text)
        culprit = f"Parquet file {match.group(1)}" if match else f"input {where}"
        raise StorageError(f"cannot read {culprit}: {first_line(text)}") from None


def scoring(action: Callable[[], T], staged: object) -> T:
    """Run the Spark job that scores and writes; classify what went wrong if it fails."""
    try:
        return action()
    except BatchServingError:
        raise
    except Exception as exc:
        text = str(exc)
        if "PythonException" in text or "Traceback" in text:
            raise ScoringError(f"scoring failed: {python_error_line(text)}") from None
        raise StorageError(f"writing staged output {staged} failed: {first_line(text)}") from None


def python_error_line(text: str) -> str:
    """The last ``SomeError: message`` line of a Python traceback embedded in a Spark error."""
    candidates = [
        line.strip()
        for line in text.splitlines()
        if ":" in line and line.strip().split(":", 1)[0].endswith(("Error", "Exception"))
    ]
    return candidates[-1] if candidates else first_line(text)
