"""Row-level input checks that need no model: empty partitions and duplicate entity ids.

(Column presence and types are checked when the scoring plan is built: ``scoring.casts``.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from batch_serving.errors import InputValidationError
from batch_serving.storage import AnyPath

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
    """(rows beyond the first per entity id, a few example ids), reading the id columns only.

    The count decides; examples are looked for only when there are duplicates (rare), with
    pandas, so they are the same ids in the same order whichever path counted."""
    from batch_serving.storage.files import read_table

    tables = [read_table(f, columns=list(entity_columns)) for f in files]
    extra = _fast_extra(tables)
    if extra == 0:
        return 0, []
    ids = _pandas_ids(tables)
    dup = ids.duplicated(keep="first")
    examples = ids[dup].drop_duplicates().head(5).to_numpy().tolist()
    return int(dup.sum()), [e[0] if len(e) == 1 else e for e in examples]


def _pandas_ids(tables: Sequence[pa.Table]) -> Any:
    """The id columns of every file as one pandas frame (files may differ in integer width)."""
    import pandas as pd

    return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def _fast_extra(tables: Sequence[pa.Table]) -> int | None:
    """Rows beyond the first per id for ONE integer id column without nulls (the common case),
    with numpy: 0 at once when ids only increase across the files (written in id order), else
    a sort; None when the case does not apply (strings, several columns, nulls, mixed types)."""
    if not tables or tables[0].num_columns != 1:
        return None
    kind = tables[0].schema.types[0]
    if not pa.types.is_integer(kind) or any(t.schema.types[0] != kind for t in tables):
        return None
    column = pa.chunked_array([c for t in tables for c in t.column(0).chunks], type=kind)
    if column.null_count:
        return None
    ids = column.to_numpy()
    if len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return 0
    ids = np.sort(ids)
    return int(np.count_nonzero(ids[1:] == ids[:-1]))


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
