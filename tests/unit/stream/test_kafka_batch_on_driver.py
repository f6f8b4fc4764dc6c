"""A Kafka micro-batch's clean messages scored on the driver (``RowsPart``): the rows picked
from the one collect, and the Arrow core's scores, without a JVM."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from batch_serving.models.registry import ModelRef
from batch_serving.scoring.plan import ERROR_CLASS
from batch_serving.spark.delivery import driver_delivery
from batch_serving.stream.batches import StepClock, score_rows
from batch_serving.stream.kafka_source import _FAILED, _MALFORMED, _MISSING, _clean_rows
from batch_serving.stream.source import CORRUPT
from tests.unit.scoring.test_scoring_core import plan_for, tiny_model


def test_clean_rows_are_the_messages_without_defects_and_drop_their_text() -> None:
    rows = pa.table(
        {
            "id": [1, 2, 3, 4],
            CORRUPT: ['{"id": 1}', "junk", '{"id": 3}', '{"id": 4}'],
            _MALFORMED: [False, True, False, False],
            _FAILED: ["", "", "tenure_months", ""],
            _MISSING: ["", "", "", ""],
        }
    )

    clean = _clean_rows(rows, ["id", CORRUPT])

    assert clean.column_names == ["id", CORRUPT]
    assert clean.column("id").to_pylist() == [1, 4]
    assert clean.column(CORRUPT).to_pylist() == [None, None]
    assert clean.schema.field(CORRUPT).type == pa.string()


def test_rows_scored_on_the_driver_equal_predict_proba_and_bad_rows_are_quarantined() -> None:
    model = tiny_model()
    first = pa.record_batch(
        {
            "id": pa.array([1, 2], pa.int64()),
            "tenure_months": [0.5, None],
            "monthly_charges": [1.25, 0.5],
        }
    )
    second = pa.record_batch(
        {"id": pa.array([3], pa.int64()), "tenure_months": [2.0], "monthly_charges": [-0.75]}
    )
    rows = pa.Table.from_batches([first, second])  # a collect comes in several batches
    plan = plan_for(model, rows.schema)
    ref = ModelRef("tiny", 4, "champion", "run-tiny", "file:/m", "sqlite://", "sqlite://")
    handle = driver_delivery(ref, model, 0.1).handle

    scored = score_rows(rows, plan, [handle])

    assert scored.schema == plan.tagged_schema
    good = scored.filter(scored.column(ERROR_CLASS).is_null())
    bad = scored.filter(scored.column(ERROR_CLASS).is_valid())
    assert good.column("id").to_pylist() == [1, 3]
    assert bad.column("id").to_pylist() == [2]  # a null feature
    churn = list(model.classes_).index("churn")
    expected = model.predict_proba(np.array([[0.5, 1.25], [2.0, -0.75]]))[:, churn]
    np.testing.assert_allclose(good.column("score").to_numpy(), expected, rtol=0, atol=1e-12)


def test_step_clock_times_each_step_from_the_previous_one() -> None:
    clock = StepClock()
    clock.lap("parts")
    sum(range(200_000))
    clock.lap("score")

    assert list(clock.steps) == ["parts", "score"]
    assert clock.steps["score"] > 0
    assert abs(clock.seconds() * 1000 - sum(clock.steps.values())) < 0.2  # each rounded
