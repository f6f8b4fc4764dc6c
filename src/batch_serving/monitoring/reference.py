"""The reference of a run and the bins it fixes, decided once on the driver before scoring.

Per column, the bins come from the first of:
1. the training profile logged with the champion (``monitoring/reference_profile.json`` in its
   MLflow run; ``reference: model`` or ``auto``),
2. the profile of the latest committed date before this one (``reference: previous`` or
   ``auto``): its edges are the ones the first run fixed, so every run of a job shares them
   and the report's sparklines compare like with like,
3. nothing yet (the job's first run): numeric features get quantile edges and categorical ones
   their top-k from ``sample_rows`` rows read on the driver (a peek, not a scan), probability
   scores get ``bins`` equal-width bins over [0, 1]. That run has no drift numbers; the next
   one compares against it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.monitoring.profile import (
    PROFILE_NAME,
    ColumnSpec,
    Kind,
    Profile,
    ProfileSpec,
    Role,
    numeric_values,
    read_profile,
)

log = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "monitoring/reference_profile.json"


@dataclass(frozen=True)
class Monitored:
    """A column to profile: its name (as the profile names it), role and Arrow type."""

    name: str
    role: Role
    type: pa.DataType
    probability: bool = False  # a score in [0, 1]


def column_kind(dtype: pa.DataType) -> Kind:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
    return "numeric" if numeric or pa.types.is_decimal(dtype) else "categorical"


def previous_profile(table_dir: Path, run_date: dt.date) -> Profile | None:
    """The profile of the latest committed partition before ``run_date`` that has one."""
    prefix = "ds="
    if not table_dir.is_dir():
        return None
    dates = sorted(p.name[len(prefix) :] for p in table_dir.glob(prefix + "*"))
    for day in reversed([d for d in dates if d < run_date.isoformat()]):
        found = read_profile(table_dir / f"{prefix}{day}" / PROFILE_NAME)
        if found is not None:
            return found
    return None


def model_profile(tracking_uri: str, run_id: str | None) -> Profile | None:
    """The training profile logged with the model's MLflow run, if any."""
    if run_id is None:
        return None
    try:
        import mlflow

        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, tracking_uri=tracking_uri
        )
    except Exception as exc:  # absent is the common case; any other failure: no reference
        log.info("no training reference profile in model run %s (%s)", run_id, type(exc).__name__)
        return None
    return read_profile(Path(local))


def build_spec(
    columns: Sequence[Monitored],
    references: Sequence[Profile],
    sample: Callable[[list[str]], pa.Table],
    bins: int,
    top_k: int,
    bin_sample: float = 1.0,
) -> ProfileSpec:
    """Bins for every column: from the first reference that has it, else placed from a sample
    (read only if some column needs it)."""
    specs: dict[str, ColumnSpec] = {}
    missing: list[Monitored] = []
    for column in columns:
        kind = column_kind(column.type)
        found = _from_references(column, kind, references)
        if found is not None:
            specs[column.name] = found
        elif column.role != "feature":
            if column.probability:
                edges = tuple(float(e) for e in np.linspace(0, 1, bins + 1)[1:-1])
                specs[column.name] = ColumnSpec(column.name, "numeric", column.role, edges)
            else:
                log.info("drift: no reference bins for %s yet; not profiled", column.name)
        else:
            missing.append(column)
    if missing:
        table = sample([c.name for c in missing])
        for column in missing:
            values = table.column(column.name) if column.name in table.schema.names else None
            specs[column.name] = bins_from_sample(column, values, bins, top_k)
    return ProfileSpec(tuple(specs[c.name] for c in columns if c.name in specs), bin_sample)


def _from_references(
    column: Monitored, kind: Kind, references: Sequence[Profile]
) -> ColumnSpec | None:
    for reference in references:
        found = reference.column(column.name)
        if found is not None and found[0].kind == kind:
            spec = found[0]
            return ColumnSpec(column.name, kind, column.role, spec.edges, spec.categories)
    return None


def bins_from_sample(
    column: Monitored, values: pa.ChunkedArray | pa.Array | None, bins: int, top_k: int
) -> ColumnSpec:
    kind = column_kind(column.type)
    if kind == "categorical":
        return ColumnSpec(column.name, kind, column.role, (), top_categories(values, top_k))
    return ColumnSpec(column.name, kind, column.role, quantile_edges(values, bins))


def quantile_edges(values: pa.ChunkedArray | pa.Array | None, bins: int) -> tuple[float, ...]:
    """Distinct interior quantile edges of the finite values (a constant column: one edge)."""
    if values is None:
        return ()
    x = numeric_values(values)
    x = x[np.isfinite(x)]
    if not len(x):
        return ()
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    return tuple(float(e) for e in edges)


def top_categories(values: pa.ChunkedArray | pa.Array | None, top_k: int) -> tuple[str, ...]:
    if values is None or not len(values):
        return ()
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    strings = pc.cast(values, pa.string()).drop_null()
    counted = pc.value_counts(strings)
    pairs = sorted(
        zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True),
        key=lambda vc: (-vc[1], vc[0]),
    )
    return tuple(str(v) for v, _ in pairs[:top_k])


def reference_profiles(
    mode: str, model: Callable[[], Profile | None], previous: Callable[[], Profile | None]
) -> list[Profile]:
    """The references to take bins from, in priority order, for ``monitoring.reference``."""
    order = {"auto": (model, previous), "model": (model,), "previous": (previous,)}[mode]
    found = (get() for get in order)
    return [p for p in found if p is not None]


def describe(profile: Profile | None) -> dict[str, Any]:
    """What the manifest and the report say about a reference."""
    if profile is None:
        return {"kind": "none"}
    return dict(profile.source)


def source_of(profile: Profile, fields: Mapping[str, Any]) -> Profile:
    return Profile(profile.spec, profile.counts, {**profile.source, **fields})


def training_reference(
    table: pa.Table, score_column: str | None, bins: int = 10, top_k: int = 20
) -> Profile:
    """A reference profile of training data: every column of ``table`` a feature except
    ``score_column`` (the model's probability on that data). Log it with the model as
    ``REFERENCE_ARTIFACT`` (``log_training_reference``) and every scoring run of that model
    compares against it."""
    from batch_serving.monitoring.profile import profile_table

    columns = [
        Monitored(f.name, "score" if f.name == score_column else "feature", f.type, True)
        for f in table.schema
    ]
    spec = build_spec(columns, [], lambda names: table.select(names), bins, top_k)
    return profile_table(spec, table, {"kind": "model", "rows": table.num_rows})


def log_training_reference(profile: Profile) -> None:
    """Log ``profile`` into the active MLflow run (call inside ``mlflow.start_run()``)."""
    import mlflow

    mlflow.log_dict(profile.to_dict(), REFERENCE_ARTIFACT)
