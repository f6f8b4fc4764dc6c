"""The ``input:`` section: where the warehouse table lives (a path or a metastore table),
how its date partition is spelled, and which other partitions are read.

Its own module because the partition layout rules (formats, filters, nesting) are a concern
of their own; ``sections`` re-exports ``InputConfig`` with the other sections.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, PrivateAttr, field_validator, model_validator

from batch_serving.config.date_format import to_strftime
from batch_serving.config.frozen import Frozen
from batch_serving.errors import ConfigError

PARTITION_KEY = r"^[A-Za-z_][A-Za-z0-9_]*$"
TABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$"  # database.table


class InputConfig(Frozen):
    """Where the warehouse table lives and how it is partitioned by date.

    Set ``path`` (a Parquet table root) or ``table`` (a Hive metastore table, resolved to its
    location and partition columns when the run's Spark session starts). Either way the job
    reads files: one leaf directory per date, ``<root>/<col>=<value>/...`` in the table's
    partition order.
    """

    path: str | None = None
    """Root of the input Parquet table, holding Hive-style `<partition_column>=<date>`
    directories (set exactly one of `path` and `table`)."""
    table: str | None = Field(default=None, pattern=TABLE_NAME)
    """`database.table` in the Spark catalog (Hive metastore of the `catalog:` section): a
    Parquet table partitioned by `partition_column`; its location and partition columns are
    read from the metastore (set exactly one of `path` and `table`)."""
    partition_column: str = Field(default="ds", pattern=PARTITION_KEY)
    """Name of the date partition column (the directory prefix)."""
    partition_format: str = "yyyy-MM-dd"
    """How the date is spelt in the directory name, in Spark's `date_format` letters: `yyyy`,
    `MM`, `dd`, separated by nothing, `-`, `_` or `.` (`yyyyMMdd` finds `dt=20261122`)."""
    partition_filter: dict[str, str] = {}
    """Other partition columns fixed to one value each, e.g. `{region: eu}`: only
    `region=eu` is read, whether it nests under the date (`ds=D/region=eu/`) or above it
    (`region=eu/ds=D/`, see `partitioned_by`)."""
    partitioned_by: tuple[str, ...] | None = None
    """`path` input: the partition columns in directory order, outermost first, e.g.
    `[region, ds]` for `region=eu/ds=D/`; `null` means the date first, then the
    `partition_filter` columns as written. A `table` input takes the order from the
    metastore. Columns after the last fixed one are read whole."""

    _location: str | None = PrivateAttr(default=None)
    _table_columns: tuple[str, ...] | None = PrivateAttr(default=None)

    @field_validator("partition_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        to_strftime(value)
        return value

    @field_validator("partition_filter", mode="before")
    @classmethod
    def _values_as_text(cls, value: Any) -> Any:
        """``{year: 2026}``: a directory name's value is text, however YAML typed it."""
        if isinstance(value, dict):
            return {k: _as_text(v) for k, v in value.items()}
        return value

    @field_validator("partition_filter")
    @classmethod
    def _filter_names(cls, value: dict[str, str]) -> dict[str, str]:
        for column, wanted in value.items():
            if not re.fullmatch(PARTITION_KEY, column):
                raise ValueError(f"partition column name {column!r} is not a plain name")
            if not wanted or any(c in wanted for c in "/\\=*?[]"):
                raise ValueError(f"{column}: value {wanted!r} cannot be a directory name")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> InputConfig:
        if (self.path is None) == (self.table is None):
            raise ValueError("set exactly one of input.path or input.table")
        if self.partition_column in self.partition_filter:
            raise ValueError(
                f"partition_filter fixes {self.partition_column}, the date column: the run "
                "date picks it"
            )
        if self.table is not None and self.partitioned_by is not None:
            raise ValueError(
                "partitioned_by is read from the metastore for input.table: leave it unset"
            )
        if self.partitioned_by is not None:
            problem = nesting_error(
                self.partitioned_by, self.partition_column, self.partition_filter
            )
            if problem is not None:
                raise ValueError(f"partitioned_by {list(self.partitioned_by)}: {problem}")
        return self

    @property
    def date_strftime(self) -> str:
        """``partition_format`` as a strftime pattern (checked at load)."""
        return to_strftime(self.partition_format)

    @property
    def source(self) -> str:
        """What the job file names as its input: the table, or the path."""
        return self.table if self.table is not None else str(self.path)

    @property
    def root(self) -> str:
        """The table's root directory: ``path``, or the resolved table's location."""
        if self.path is not None:
            return self.path
        if self._location is None:
            raise ConfigError(
                f"input.table {self.table} is not resolved to its location yet: it needs the "
                "job's Spark session and metastore (the score, backfill and check-input "
                "commands resolve it)"
            )
        return self._location

    @property
    def nesting(self) -> tuple[str, ...]:
        """The partition columns in directory order, outermost first."""
        if self._table_columns is not None:
            return self._table_columns
        if self.partitioned_by is not None:
            return self.partitioned_by
        return (self.partition_column, *self.partition_filter)

    def resolved(self, location: str, columns: tuple[str, ...]) -> InputConfig:
        """A copy of a ``table`` input that knows where the table's files are and how its
        partition directories nest (the metastore's answer). The job file's fields are
        unchanged, so the config digest is the job file's."""
        problem = nesting_error(columns, self.partition_column, self.partition_filter)
        if problem is not None:
            raise ConfigError(f"input.table {self.table}: {problem}")
        copy = self.model_copy()
        copy._location, copy._table_columns = location, columns
        return copy


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()  # Hive spells booleans true/false
    return str(value) if isinstance(value, int | float) else value


def nesting_error(columns: tuple[str, ...], date_column: str, fixed: dict[str, str]) -> str | None:
    """Why ``columns`` (the partition order) cannot be read one date at a time with ``fixed``
    filters, or None: the date and every filtered column must be partition columns, and only
    columns after the last fixed one may be left open (read whole, as subdirectories)."""
    if date_column not in columns:
        return f"not partitioned by {date_column} (partition columns: {list(columns)})"
    missing = [c for c in fixed if c not in columns]
    if missing:
        return f"partition_filter columns {missing} are not partition columns {list(columns)}"
    pinned = {date_column, *fixed}
    last = max(columns.index(c) for c in pinned)
    open_before = [c for c in columns[:last] if c not in pinned]
    if open_before:
        return (
            f"partition columns {open_before} nest above a fixed one in {list(columns)}: "
            "add them to partition_filter"
        )
    if len(set(columns)) != len(columns):
        return f"partition columns {list(columns)} repeat a name"
    return None
