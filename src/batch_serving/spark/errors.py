"""Spark failures as our exceptions: a message that names the file or the Python error, never a
bare Py4J/JVM wrapper line."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from batch_serving.errors import (
    BatchServingError,
    QueryError,
    ScoringError,
    StorageError,
    first_line,
)

T = TypeVar("T")
_PARQUET_PATH = re.compile(r"(?:file:)?(/[^\s'\"\]\[,]+\.parquet)")
# "file:/x/README.txt is not a Parquet file", "Could not read footer for file: s3a://b/k"
_NAMED_FILE = re.compile(
    r"(?:file:)?((?:/|[a-z][a-z0-9+.-]*://)[^\s'\"\]\[,]+?)\.? is not a Parquet file"
    r"|for file:? (?:file:)?((?:/|[a-z][a-z0-9+.-]*://)[^\s'\"\]\[,]+?)\.?(?:\s|$)"
)
# "[TABLE_OR_VIEW_NOT_FOUND] The table or view `predictions`.`chrun` cannot be found. ..."
_NO_TABLE = re.compile(r"\[TABLE_OR_VIEW_NOT_FOUND\] The table or view (\S+) cannot be found")
# tables a "not found" message lists (a shared metastore can hold thousands)
LISTED_TABLES = 20
_CONNECT_STACK = "\nJVM stacktrace:"
_PY4J_WRAPPER = re.compile(r"^An error occurred while calling \S+\.?$")
_JAVA_CLASS = re.compile(r"^(?:Caused by: )?(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error): ")


def reading(action: Callable[[], T], where: str) -> T:
    """Run a Spark action over the input; an unreadable file becomes a StorageError naming it."""

    def unreadable(text: str) -> BatchServingError:
        named = _NAMED_FILE.search(text)
        match = _PARQUET_PATH.search(text)
        if named:
            culprit = f"Parquet file {named.group(1) or named.group(2)}"
        else:
            culprit = f"Parquet file {match.group(1)}" if match else f"input {where}"
        return StorageError(f"cannot read {culprit}: {jvm_error_line(text)}")

    return _translated(action, unreadable)


def scoring(action: Callable[[], T], staged: object) -> T:
    """Run the Spark job that scores and writes; classify what went wrong if it fails."""

    def failed(text: str) -> BatchServingError:
        if "PythonException" in text or "Traceback" in text:
            return ScoringError(f"scoring failed: {python_error_line(text)}")
        return StorageError(f"writing staged output {staged} failed: {jvm_error_line(text)}")

    return _translated(action, failed)


def querying(action: Callable[[], T], tables: Callable[[], list[str]]) -> T:
    """Run a user's SQL (parse, plan and fetch its rows); any failure becomes one QueryError
    line. An unknown table or view is named, with the ``tables()`` there are."""

    def failed(text: str) -> BatchServingError:
        missing = _NO_TABLE.search(text)
        if missing is None:
            return QueryError(f"query failed: {jvm_error_line(text)}")
        name = missing.group(1).replace("`", "")
        return QueryError(f"table or view '{name}' not found; tables: {_listed(tables)}")

    return _translated(action, failed)


def _listed(tables: Callable[[], list[str]]) -> str:
    try:
        names = sorted(tables())
    except Exception as exc:  # the catalog itself failed: say so, keep the one line
        return f"(cannot list them: {jvm_error_line(str(exc))})"
    if not names:
        return "none"
    more = len(names) - LISTED_TABLES
    shown = " ".join(names[:LISTED_TABLES])
    return f"{shown} (and {more} more)" if more > 0 else shown


def _translated(action: Callable[[], T], error_for: Callable[[str], BatchServingError]) -> T:
    """Run ``action``; our own errors pass as they are, any other becomes ``error_for(its
    text)``, raised without the chained Py4J/JVM trace."""
    try:
        return action()
    except BatchServingError:
        raise
    except Exception as exc:
        raise error_for(without_jvm_stack(str(exc))) from None


def without_jvm_stack(text: str) -> str:
    """A Spark Connect error's text without the server's ``JVM stacktrace:`` section it
    appends (its ``Caused by`` lines would otherwise be taken for the cause)."""
    return text.split(_CONNECT_STACK, 1)[0].rstrip()


def jvm_error_line(text: str) -> str:
    """The line of a Spark/Py4J error that says what went wrong: the innermost ``Caused by``
    (else the first line that is not Py4J's "An error occurred while calling oNN.parquet"),
    without the Java class name."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("Caused by: ")]
    useful = [line.lstrip(": ").strip() for line in lines if not _PY4J_WRAPPER.match(line)]
    line = causes[-1] if causes else next(iter(useful), first_line(text))
    return _JAVA_CLASS.sub("", line.lstrip(": ").strip()) or first_line(text)


def python_error_line(text: str) -> str:
    """The last ``SomeError: message`` line of a Python traceback embedded in a Spark error."""
    candidates = [
        line.strip()
        for line in text.splitlines()
        if ":" in line and line.strip().split(":", 1)[0].endswith(("Error", "Exception"))
    ]
    return candidates[-1] if candidates else first_line(text)
