"""Predictions as Parquet writes them fastest: run-constant lineage as dictionary arrays.

Every predictions row names the model versions that scored it: the row's own model and, in a
multi-model plan, each member's (name, version, run id). As plain strings Parquet hashes every
value into its page dictionary and keeps min/max statistics value by value: for 4 members
those 15 constant leaves cost 2.5x as much to write as all the scores. Passed as dictionary
arrays of one value, without statistics, they cost ~1.5 ns a row, and the file is the same
(dictionary pages, RLE indices). Files are written without the embedded Arrow schema, so
pyarrow reads them back with the plan's plain types, as Spark and SQL do.
No pyspark here: any engine that writes predictions files with pyarrow can use it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from batch_serving.models.registry import ModelRef
from batch_serving.scoring.plan import MODEL_FIELDS, MODEL_RUN, ScoringPlan


class StoredPredictions:
    """Encodes ``plan.output_schema`` batches for writing: ``schema`` is the schema to open the
    writer with and ``statistics`` the leaf columns that keep min/max statistics."""

    def __init__(self, plan: ScoringPlan) -> None:
        refs = {m.key: m.ref for m in plan.members} if plan.multi else {}
        self._top = _constants(plan.served.ref)
        self._members = {key: _constants(ref) for key, ref in refs.items()}
        self._zeros = pa.array(np.zeros(0, dtype=np.int32))
        fields = [self._field(f) for f in plan.output_schema]
        self.schema = pa.schema(fields)
        self.statistics = [p for f in plan.output_schema for p in _leaves(f, self._encoded)]

    def encode(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` (in ``plan.output_schema``) with its lineage leaves as dictionary arrays."""
        n = batch.num_rows
        if len(self._zeros) < n:
            self._zeros = pa.array(np.zeros(max(n, 65_536), dtype=np.int32))
        zeros = self._zeros.slice(0, n)
        arrays = []
        for field, column in zip(batch.schema, batch.columns, strict=True):
            if field.name in self._top:
                arrays.append(_repeat(self._top[field.name], zeros))
            elif field.name in self._members and pa.types.is_struct(field.type):
                arrays.append(self._struct(field, column, self._members[field.name], zeros))
            else:
                arrays.append(column)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _struct(
        self, field: pa.Field, column: pa.Array, values: dict[str, pa.Array], zeros: pa.Array
    ) -> pa.Array:
        kind = field.type
        children = column.flatten()
        arrays = [
            _repeat(values[kind.field(i).name], zeros) if kind.field(i).name in values else child
            for i, child in enumerate(children)
        ]
        return pa.StructArray.from_arrays(arrays, fields=list(self._field(field).type))

    def _field(self, field: pa.Field) -> pa.Field:
        if field.name in self._top:
            return _dictionary(field, self._top[field.name])
        if field.name in self._members and pa.types.is_struct(field.type):
            values = self._members[field.name]
            kind = field.type
            children = [
                _dictionary(kind.field(i), values[kind.field(i).name])
                if kind.field(i).name in values
                else kind.field(i)
                for i in range(kind.num_fields)
            ]
            return field.with_type(pa.struct(children))
        return field

    def _encoded(self, parent: str | None, name: str) -> bool:
        if parent is None:
            return name in self._top
        return name in self._members.get(parent, {})


def _constants(ref: ModelRef) -> dict[str, pa.Array]:
    """Dictionaries of one value for a model's lineage leaves (a null run id stays plain)."""
    name, version = MODEL_FIELDS
    values = {
        name.name: pa.array([ref.name], name.type),
        version.name: pa.array([ref.version], version.type),
    }
    if ref.run_id is not None:
        values[MODEL_RUN.name] = pa.array([ref.run_id], MODEL_RUN.type)
    return values


def _dictionary(field: pa.Field, dictionary: pa.Array) -> pa.Field:
    return field.with_type(pa.dictionary(pa.int32(), dictionary.type))


def _repeat(dictionary: pa.Array, zeros: pa.Array) -> pa.Array:
    """The constant column as a dictionary array (``BatchScorer`` sets lineage on every row)."""
    return pa.DictionaryArray.from_arrays(zeros, dictionary)


def _leaves(field: pa.Field, encoded: Callable[[str | None, str], bool]) -> list[str]:
    """Leaf paths of ``field`` that keep statistics (all but the encoded lineage)."""
    if pa.types.is_struct(field.type):
        kind = field.type
        return [
            f"{field.name}.{kind.field(i).name}"
            for i in range(kind.num_fields)
            if not encoded(field.name, kind.field(i).name)
            and not pa.types.is_nested(kind.field(i).type)
        ]
    if pa.types.is_map(field.type):
        return [f"{field.name}.key_value.key", f"{field.name}.key_value.value"]
    return [] if encoded(None, field.name) else [field.name]
