"""Binned profiles: per-bin counts of every monitored column, gathered inside the scoring tasks.

A ``ProfileSpec`` (fixed numeric edges and categorical top-k lists, decided once on the driver)
travels to the tasks with the scoring plan. Each task fills a ``ProfilePartial`` from the batches
it scores (input features and the scores it produced, so the input is read once) and the driver
merges the partials. A ``Profile`` is what gets stored beside the manifest: counts, never rows,
so its size depends on the number of columns and bins, not on the row count.

Bins of a numeric column with interior edges ``e1 < ... < ek``: ``(-inf, e1)``, ``[e1, e2)``, ...,
``[ek, +inf)`` (as ``searchsorted(edges, x, side="right")``); nulls and NaN are counted apart. A
categorical column counts its top-k categories in order, then one ``other`` bin (anything else).

Numeric bins may be counted on a sample (``ProfileSpec.sample`` < 1): each batch of more than
``SAMPLE_FLOOR`` values draws ``max(SAMPLE_FLOOR, ceil(n * sample))`` of its values uniformly
at random (with replacement, seeded, so a rerun counts the same) and adds the draw's bin counts
scaled to the batch's own number of values (a smaller batch counts all), so every batch weighs
by its size whatever was drawn from it. Binning is most of what a profile costs. With ``N``
values in all and ``k`` edges, every cumulative bin share is within
``sqrt(ln(2k / a) / (2 * sample * N))`` of the exact one with probability ``1 - a``
(Hoeffding's inequality over the draws, each batch drawing at least its share, and a union
over the edges), while rows, nulls, NaN, min, max and sum stay exact; sampled bin counts are
then estimates, not integers.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PROFILE_NAME = "_profile.json"  # beside _manifest.json in the committed partition
FORMAT_VERSION = 1
OTHER = "<other>"
SAMPLE_FLOOR = 8_192  # a batch of at most this many values is binned whole
SAMPLE_SEED = 20_240_613  # fixed: the same batches are binned from the same positions

Kind = Literal["numeric", "categorical"]
Role = Literal["feature", "score", "member_score"]


@dataclass(frozen=True)
class ColumnSpec:
    """How one column is binned. ``source`` is where the values come from: an input column
    (features), a predictions column (``score``) or ``<member>.<field>`` (a member's struct)."""

    name: str
    kind: Kind
    role: Role
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def bins(self) -> int:
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.categories) + 1

    def labels(self) -> list[str]:
        """Human-readable bin names, for the report."""
        if self.kind == "categorical":
            return [*self.categories, OTHER]
        e = [f"{x:.4g}" for x in self.edges]
        if not e:
            return ["all"]
        middle = [f"[{a}, {b})" for a, b in itertools.pairwise(e)]
        return [f"< {e[0]}", *middle, f">= {e[-1]}"]


@dataclass(frozen=True)
class ProfileSpec:
    """Every monitored column of a run, in report order (scores first, then features)."""

    columns: tuple[ColumnSpec, ...]
    sample: float = 1.0  # share of each batch's values binned for numeric columns (1: all)

    def partial(self) -> ProfilePartial:
        return ProfilePartial({c.name: ColumnCounts.empty(c) for c in self.columns})

    def by_name(self) -> dict[str, ColumnSpec]:
        return {c.name: c for c in self.columns}


@dataclass
class ColumnCounts:
    """Counts of one column: ``counts`` per bin, plus rows, nulls, NaN and numeric moments."""

    counts: np.ndarray
    rows: int = 0
    nulls: int = 0
    nans: int = 0
    total: float = 0.0  # sum of finite values (numeric)
    low: float = float("inf")
    high: float = float("-inf")

    @classmethod
    def empty(cls, spec: ColumnSpec) -> ColumnCounts:
        return cls(np.zeros(spec.bins, dtype=np.float64))  # sampled bins are estimates

    def merge(self, other: ColumnCounts) -> ColumnCounts:
        return ColumnCounts(
            self.counts + other.counts,
            self.rows + other.rows,
            self.nulls + other.nulls,
            self.nans + other.nans,
            self.total + other.total,
            min(self.low, other.low),
            max(self.high, other.high),
        )


@dataclass
class ProfilePartial:
    """Mergeable counts of some rows (one task's, or several merged); small and picklable."""

    columns: dict[str, ColumnCounts] = field(default_factory=dict)
    batches: int = 0  # batches added so far: seeds each batch's sample positions

    def add(self, spec: ProfileSpec, batch: pa.RecordBatch, predictions: pa.RecordBatch) -> None:
        """Count one scored batch: features from the input ``batch``, scores from ``predictions``
        (the scored rows only; quarantined rows have no score)."""
        self.batches += 1
        positions: dict[int, np.ndarray | None] = {}  # per array length: one draw per batch
        for column in spec.columns:
            values = _values(column, batch, predictions)
            if values is None:
                continue
            n = len(values)
            if column.kind == "numeric" and n not in positions:
                positions[n] = sample_positions(n, spec.sample, self.batches)
            _count(column, values, self.columns[column.name], positions.get(n))

    def merge(self, other: ProfilePartial) -> ProfilePartial:
        names = dict.fromkeys([*self.columns, *other.columns])
        merged: dict[str, ColumnCounts] = {}
        for name in names:
            a, b = self.columns.get(name), other.columns.get(name)
            merged[name] = a.merge(b) if a is not None and b is not None else (a or b)  # type: ignore[assignment]
        return ProfilePartial(merged)


def _values(
    column: ColumnSpec, batch: pa.RecordBatch, predictions: pa.RecordBatch
) -> pa.Array | None:
    if column.role == "feature":
        names = batch.schema.names
        return batch.column(names.index(column.name)) if column.name in names else None
    if column.role == "member_score":
        key, _, name = column.name.partition(".")
        if key not in predictions.schema.names:
            return None
        struct = predictions.column(predictions.schema.names.index(key))
        return pc.struct_field(struct, name)
    names = predictions.schema.names
    return predictions.column(names.index(column.name)) if column.name in names else None


def sample_positions(n: int, share: float, seed: int) -> np.ndarray | None:
    """Positions of the values binned out of ``n`` (None: all of them)."""
    m = max(SAMPLE_FLOOR, math.ceil(n * share))
    if m >= n:
        return None
    return np.random.default_rng((SAMPLE_SEED, n, seed)).integers(0, n, m)


def _count(
    spec: ColumnSpec, values: pa.Array, into: ColumnCounts, positions: np.ndarray | None = None
) -> None:
    """Add ``values`` to ``into`` (in place: the partial belongs to one task); numeric bins
    from the values at ``positions`` only, when given."""
    n = len(values)
    into.rows += n
    nulls = values.null_count
    into.nulls += nulls
    if spec.kind == "categorical":
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        strings = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        index = pc.index_in(strings, value_set=pa.array(spec.categories, pa.string()))
        found = index.drop_null().to_numpy(zero_copy_only=False)
        counts = np.bincount(found, minlength=spec.bins)
        counts[-1] += n - nulls - len(found)  # not a top-k category: "other"
        into.counts += counts
        return
    x = numeric_values(values)
    if not n:
        return
    # the common case (no null, NaN or inf) in as few passes as possible: min and max are
    # finite only when every value is (a NaN or inf would show in one of them)
    low, high = float(x.min()), float(x.max())
    clean = np.isfinite(low) and np.isfinite(high)
    missing = 0 if clean else n - int(np.count_nonzero(x == x))  # nulls (as NaN) and NaN
    into.nans += missing - nulls
    into.counts += _bins(spec, x, missing, positions)
    if not clean:
        v = x[np.isfinite(x)]
        if not len(v):
            return
        low, high = float(v.min()), float(v.max())
    else:
        v = x
    into.total += float(v.sum())
    into.low = min(into.low, low)
    into.high = max(into.high, high)


def _bins(
    spec: ColumnSpec, x: np.ndarray, missing: int, positions: np.ndarray | None
) -> np.ndarray:
    """Counts per bin from "how many are below each edge": vectorized comparisons are ~50x
    faster than searchsorted over unsorted values; NaN compares False everywhere. From a
    sample (``positions``), the sample's counts scaled to the batch's values: every batch then
    weighs by its own values however many were drawn from it (a small batch counts all)."""
    if positions is not None:
        drawn = x[positions]
        absent = len(drawn) - int(np.count_nonzero(drawn == drawn)) if missing else 0
        if absent < len(drawn):  # else no value drawn: count the batch's own values
            counts = _below_each_edge(spec, drawn, absent)
            return counts * ((len(x) - missing) / (len(drawn) - absent))
    return _below_each_edge(spec, x, missing).astype(np.float64)


def _below_each_edge(spec: ColumnSpec, x: np.ndarray, missing: int) -> np.ndarray:
    below = [np.count_nonzero(x < e) for e in spec.edges]
    return np.diff(np.concatenate([[0], below, [len(x) - missing]])).astype(np.int64)


def numeric_values(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float64 numpy, nulls as NaN; zero-copy for float64 columns without nulls."""
    if pa.types.is_float64(values.type) and values.null_count == 0:
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    if pa.types.is_boolean(values.type):
        values = pc.cast(values, pa.int8())
    return np.asarray(
        pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    )


@dataclass(frozen=True)
class Profile:
    """A finished profile: the spec and the merged counts, plus where it came from."""

    spec: ProfileSpec
    counts: Mapping[str, ColumnCounts]
    source: Mapping[str, Any]  # run_id, run_date, model ... (what produced these counts)

    def column(self, name: str) -> tuple[ColumnSpec, ColumnCounts] | None:
        spec = self.spec.by_name().get(name)
        if spec is None or name not in self.counts:
            return None
        return spec, self.counts[name]

    def to_dict(self) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        for c in self.spec.columns:
            got = self.counts.get(c.name)
            if got is None:
                continue
            columns[c.name] = {
                "kind": c.kind,
                "role": c.role,
                "edges": list(c.edges),
                "categories": list(c.categories),
                "counts": [int(v) if float(v).is_integer() else float(v) for v in got.counts],
                "rows": got.rows,
                "nulls": got.nulls,
                "nans": got.nans,
                "sum": got.total,
                "min": got.low if np.isfinite(got.low) else None,
                "max": got.high if np.isfinite(got.high) else None,
            }
        return {
            "format": FORMAT_VERSION,
            "source": dict(self.source),
            "bin_sample": self.spec.sample,  # numeric counts: of a sample of the values if < 1
            "columns": columns,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        specs: list[ColumnSpec] = []
        counts: dict[str, ColumnCounts] = {}
        for name, c in data["columns"].items():
            spec = ColumnSpec(
                name,
                c["kind"],
                c["role"],
                tuple(float(e) for e in c["edges"]),
                tuple(str(v) for v in c["categories"]),
            )
            specs.append(spec)
            counts[name] = ColumnCounts(
                np.asarray(c["counts"], dtype=np.float64),
                int(c["rows"]),
                int(c["nulls"]),
                int(c["nans"]),
                float(c["sum"]),
                float("inf") if c["min"] is None else float(c["min"]),
                float("-inf") if c["max"] is None else float(c["max"]),
            )
        sample = float(data.get("bin_sample", 1.0))
        return cls(ProfileSpec(tuple(specs), sample), counts, dict(data.get("source", {})))

    def write(self, path: Path, *copies: Path) -> Path:
        """Atomically (temp file + rename), like the manifest; ``copies``: the same text at
        more paths (serialized once)."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"  # column order kept
        for target in (path, *copies):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, target)
        return path


def read_profile(path: Path) -> Profile | None:
    """The profile at ``path``; None if there is none or it cannot be read (a reference is
    optional: an unreadable one means 'no reference', logged by the caller)."""
    try:
        return Profile.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def profile_table(
    spec: ProfileSpec, table: pa.Table, source: Mapping[str, Any] | None = None
) -> Profile:
    """Profile a whole in-memory table (features and score columns side by side): for a
    training reference, and for tests that need a profile of many rows without Spark."""
    partial = spec.partial()
    for batch in table.to_batches(max_chunksize=65_536):
        partial.add(spec, batch, batch)
    return Profile(spec, partial.columns, dict(source or {}))


@dataclass
class Profiler:
    """One task's profile of the batches it scores (the spec and its running counts)."""

    spec: ProfileSpec
    partial: ProfilePartial

    @classmethod
    def of(cls, spec: ProfileSpec) -> Profiler:
        return cls(spec, spec.partial())

    def add(self, batch: pa.RecordBatch, predictions: pa.RecordBatch) -> None:
        self.partial.add(self.spec, batch, predictions)


@dataclass(frozen=True)
class ProfileObserver:
    """The drift profile as a scoring-task observer (``scoring.observers.TaskObserver``):
    features from the batches read, scores from the predictions written. Proportions barely
    move when a retried task counts twice, so any engine may count it (``exact`` False)."""

    spec: ProfileSpec
    key: str = "profile"
    exact: bool = False
    columns: tuple[str, ...] = ()

    def zero(self) -> ProfilePartial:
        return self.spec.partial()

    def observe(
        self, counts: ProfilePartial, batch: pa.RecordBatch, predictions: pa.RecordBatch
    ) -> None:
        counts.add(self.spec, batch, predictions)

    def merge(self, a: ProfilePartial, b: ProfilePartial) -> ProfilePartial:
        return a.merge(b)
