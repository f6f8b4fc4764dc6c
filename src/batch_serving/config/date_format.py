"""A date partition's value format: Java-style letters (Spark's ``date_format``) to strftime.

Warehouses spell the date directory as Spark or Hive wrote it (``dt=20261122``,
``ds=2026-11-22``), so the job file says it the way those tools do: ``yyyyMMdd``. Only the
letters every date partition uses are accepted (``yyyy``, ``MM``, ``dd``), each once, with
``-``, ``_`` or ``.`` between them; anything else is refused at load instead of silently
matching no directory.
"""

from __future__ import annotations

import re

TOKENS = {"yyyy": "%Y", "MM": "%m", "dd": "%d"}
SEPARATORS = "-_."
_PIECE = re.compile(r"yyyy|MM|dd|[-_.]")


def to_strftime(pattern: str) -> str:
    """``yyyy-MM-dd`` -> ``%Y-%m-%d``; a ValueError names what is wrong with ``pattern``."""
    pieces = _PIECE.findall(pattern)
    if "".join(pieces) != pattern:
        raise ValueError(
            f"date format {pattern!r}: only yyyy, MM and dd, separated by nothing or by "
            f"{' '.join(SEPARATORS)}, are supported (e.g. yyyy-MM-dd, yyyyMMdd)"
        )
    for token in TOKENS:
        if pieces.count(token) != 1:
            raise ValueError(f"date format {pattern!r} must hold {token} exactly once")
    return "".join(TOKENS.get(p, p) for p in pieces)
