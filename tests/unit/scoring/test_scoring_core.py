"""The pure-Arrow scoring core on a tiny real model, in milliseconds and without a JVM: what
every engine, the stream and the API score through (``scoring.batch.score_batch``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
from sklearn.linear_model import LogisticRegression

from batch_serving.models.adapters import OutputRequest
from batch_serving.models.adapters.sklearn import SklearnAdapter
from batch_serving.models.registry import ModelRef
from batch_serving.scoring.batch import score_batch
from batch_serving.scoring.plan import Member, ScoringPlan, build_plan

FEATURES = ("tenure_months", "monthly_charges")
AT = dt.datetime(2026, 11, 22, 3, tzinfo=dt.UTC)


def tiny_model() -> LogisticRegression:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 2))
    y = np.where(x @ np.array([1.5, -2.0]) + rng.normal(scale=0.3, size=200) > 0, "stay", "churn")
    return LogisticRegression().fit(x, y)


def plan_for(model: LogisticRegression, schema: pa.Schema) -> ScoringPlan:
    spec = SklearnAdapter().describe(
        model, None, OutputRequest(features=FEATURES, positive_label="churn"), "tiny"
    )
    ref = ModelRef("tiny", 4, "champion", "run-tiny", "file:/m", "sqlite://", "sqlite://")
    return build_plan([Member("champion", ref, spec)], ["id"], schema, "r" * 32, AT, "rows")


def test_scores_equal_predict_proba_of_the_positive_label_and_bad_rows_are_quarantined() -> None:
    model = tiny_model()
    batch = pa.RecordBatch.from_pydict(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "tenure_months": pa.array([0.5, None, -1.0, 2.0], pa.float64()),
            "monthly_charges": pa.array(["1.25", "0.5", "oops", "-0.75"], pa.string()),
        }
    )
    plan = plan_for(model, batch.schema)

    scored = score_batch(plan, [model], batch)

    rows = scored.predictions.to_pydict()
    assert rows["id"] == [1, 4]  # row 2 has a null feature, row 3 a value no cast reaches
    churn = list(model.classes_).index("churn")
    expected = model.predict_proba(np.array([[0.5, 1.25], [2.0, -0.75]]))[:, churn]
    np.testing.assert_allclose(rows["score"], expected, rtol=0, atol=1e-12)
    assert rows["model_name"] == ["tiny", "tiny"] and rows["model_version"] == [4, 4]
    assert rows["model_run_id"] == ["run-tiny", "run-tiny"]
    assert scored.quarantined is not None
    bad = scored.quarantined.to_pydict()
    assert bad["id"] == [2, 3]
    assert all(bad["error_class"]) and "oops" in bad["error_message"][1]
    assert scored.predictions.schema.equals(plan.output_schema)


def test_an_empty_batch_scores_to_an_empty_batch_of_the_output_schema() -> None:
    model = tiny_model()
    schema = pa.schema([("id", pa.int64()), *((f, pa.float64()) for f in FEATURES)])
    plan = plan_for(model, schema)

    scored = score_batch(plan, [model], pa.RecordBatch.from_pylist([], schema))

    assert scored.predictions.num_rows == 0
    assert scored.predictions.schema.equals(plan.output_schema)
    assert scored.quarantined is None
