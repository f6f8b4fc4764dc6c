"""Row isolation without Spark: bisection finds exactly the rows the model rejects."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from batch_serving.models.adapters import ModelSpec
from batch_serving.scoring.isolation import CAST_ERROR_COLUMN, score_and_split, score_isolating

SPEC = ModelSpec("sklearn", "regression", ("x",), "numpy")


class Picky:
    """Doubles x; raises for negative values (like a model that rejects some inputs)."""

    calls = 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if (x < 0).any():
            raise ValueError("negative input")
        return x[:, 0] * 2


def batch(values: list[float]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(range(len(values)), pa.int64()), pa.array(values, pa.float64())],
        names=["id", "x"],
    )


def test_clean_batch_costs_one_call() -> None:
    model = Picky()
    result = score_isolating(SPEC, model, batch([1.0, 2.0, 3.0]))
    assert model.calls == 1
    assert result.outputs[0].to_pylist() == [2.0, 4.0, 6.0]
    assert len(result.bad_rows) == 0


def test_bisection_isolates_exactly_the_bad_rows_in_order() -> None:
    values = [float(v) for v in range(64)]
    for bad in (5, 40, 41):
        values[bad] = -1.0
    model = Picky()
    result = score_isolating(SPEC, model, batch(values))
    assert sorted(result.bad_rows.tolist()) == [5, 40, 41]
    assert result.error_class == ["ValueError"] * 3
    assert result.error_message == ["negative input"] * 3
    assert result.good_rows.tolist() == [i for i in range(64) if i not in (5, 40, 41)]
    assert result.outputs[0].to_pylist() == [2 * values[i] for i in result.good_rows]
    assert model.calls < 40  # O(bad x log n), far fewer than one call per row


def test_non_finite_rows_are_split_off_first() -> None:
    class RejectsNaN(Picky):
        def predict(self, x: np.ndarray) -> np.ndarray:
            self.calls += 1
            if not np.isfinite(x).all():
                raise ValueError("Input X contains NaN.")
            return x[:, 0]

    values = [1.0] * 1000
    values[10], values[500] = float("nan"), float("inf")
    model = RejectsNaN()
    result = score_isolating(SPEC, model, batch(values))
    assert sorted(result.bad_rows.tolist()) == [10, 500]
    assert model.calls <= 6  # whole batch, clean rows, then the two suspects


def test_cast_errors_skip_the_model_and_keep_their_message() -> None:
    b = batch([1.0, 2.0, 3.0])
    flags = pa.array([None, "cannot cast column 'x' value 'two' to double", None])
    b = pa.RecordBatch.from_arrays([*b.columns, flags], names=[*b.schema.names, CAST_ERROR_COLUMN])
    split = score_and_split(SPEC, Picky(), b, ["id"])
    assert split.scored[0].to_pylist() == [0, 2]
    assert split.scored[1].to_pylist() == [2.0, 6.0]
    assert split.quarantined[0].to_pylist() == [1]
    assert split.quarantined[1].to_pylist() == ["CastError"]
    assert "value 'two'" in split.quarantined[2].to_pylist()[0]


def test_memory_errors_are_not_quarantined() -> None:
    class OutOfMemory(Picky):
        def predict(self, x: np.ndarray) -> np.ndarray:
            raise MemoryError

    with pytest.raises(MemoryError):
        score_isolating(SPEC, OutOfMemory(), batch([1.0, 2.0]))
