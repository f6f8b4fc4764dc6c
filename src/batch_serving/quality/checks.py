"""Row-level input checks that need no model: empty partitions and duplicate entity ids.

(Column presence and types are checked when the scoring plan is built: ``scoring.casts``.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from batch_serving.errors import InputValidationError
from batch_serving.tables.storage import AnyPath

log = logging.getLogger(__name__)


def check_not_empty(rows: int, allow_empty: bool, where: str) -> None:
    if rows == 0 and not allow_empty:
        raise InputValidationError(
            f"input partition {where} is empty (0 rows); set validation.allow_empty: true "
            "to commit an empty predictions partition"
        )


def duplicate_ids_arrow(
    files: Sequence[AnyPath], entity_columns: Sequence[str]
) -> tuple[int, list[Any]]:
    """(rows beyond the first per entity id, a few example ids), reading the id columns only."""
    import pandas as pd

    from batch_serving.tables.files import read_table

    ids = pd.concat(
        [read_table(f, columns=list(entity_columns)).to_pandas() for f in files],
        ignore_index=True,
    )
    dup = ids.duplicated(keep="first")
    examples = ids[dup].drop_duplicates().head(5).to_numpy().tolist()
    return int(dup.sum()), [e[0] if len(e) == 1 else e for e in examples]


def check_duplicates(
    extra: int, examples: list[Any], entity_columns: Sequence[str], policy: str, where: str
) -> None:
    """Fail (policy ``fail``) or log the duplicates found."""
    if extra and policy == "fail":
        raise InputValidationError(
            f"input partition {where} has {extra} duplicate values of {list(entity_columns)} "
            f"(e.g. {examples}); set validation.duplicate_ids to keep_last or allow"
        )
    if extra:
        log.warning("%d duplicate entity ids in %s (duplicate_ids: %s)", extra, where, policy)
