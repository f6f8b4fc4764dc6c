"""Any Great Expectations expectation by class name, checked at config load without GX.

``{expectation: ExpectColumnValuesToBeBetween, column: x, min_value: 0}`` (or the snake
name ``expect_column_values_to_be_between``) is checked against ``gx_expectations.json``,
the catalogue generated from the pinned GX (``python -m batch_serving.quality.catalog``):
an unknown class, an unknown argument or a missing required one is a config error that
names it. Value types are GX's to check when the run builds the expectation.
"""

from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).with_name("gx_expectations.json")


@functools.cache
def catalog() -> dict[str, dict[str, Any]]:
    """GX class name -> ``{"type": snake name, "args": [...], "required": [...]}``."""
    entries: dict[str, dict[str, Any]] = json.loads(CATALOG.read_text())["expectations"]
    return entries


def class_name(name: str) -> str:
    """The GX class named by ``name`` (class or snake name); ValueError naming close matches."""
    entries = catalog()
    if name in entries:
        return name
    by_type = {entry["type"]: cls for cls, entry in entries.items()}
    if name in by_type:
        return by_type[name]
    close = difflib.get_close_matches(name, [*entries, *by_type], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown Great Expectations expectation {name!r}{hint} "
        f"(known: {len(entries)} classes of great_expectations, e.g. ExpectColumnValuesToBeBetween)"
    )


def check_arguments(cls: str, arguments: dict[str, Any]) -> None:
    """ValueError naming unknown or missing arguments of expectation class ``cls``."""
    entry = catalog()[cls]
    unknown = sorted(set(arguments) - set(entry["args"]))
    if unknown:
        raise ValueError(f"{cls} has no argument(s) {unknown}; it accepts {entry['args']}")
    missing = [a for a in entry["required"] if a not in arguments]
    if missing:
        raise ValueError(f"{cls} needs argument(s) {missing}")
