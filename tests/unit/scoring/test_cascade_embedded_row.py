"""The embedded cascade's one-row path (no JVM, no server): a dict goes straight into the
ONNX session (``OnnxModel.run_row``) and its stage decides in plain Python
(``Cascade.answers_number``); every answer equals the one the list path gives for the same
row, bit for bit, and the Arrow rules evaluator's decision."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from test_cascade_core import cascade

from batch_serving.embedded import EmbeddedCascade, EmbeddedModel, LocalStage, RemoteStage, load
from batch_serving.errors import InputValidationError
from batch_serving.models.adapters import LoadedModel, OutputRequest, describe
from batch_serving.models.onnx_convert import convert

FEATURES = [f"f{i}" for i in range(6)]
CONDITIONS = [
    "score <= 0.25 or score >= 0.75",
    "score > 0.9",
    "champion.score != 0.5",
    "score == 0.25 or (score >= 0.4 and score < 0.6)",
    "score >= 1 or score < 0",  # integer literals compare as float64
]


def _frame(n: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 6)), columns=FEATURES)


def _exported(model: Any, tmp_path: Path, types: dict[str, str]) -> Any:
    """``model`` (fitted), through the export's conversion, loaded as a bare file."""
    spec = describe(LoadedModel("sklearn", model, None), OutputRequest(), "m")
    path = tmp_path / "m.onnx"
    path.write_bytes(convert(model, spec, types).data)
    return load(path, positive_label=1)


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedModel:
    train = _frame(500, 1)
    label = (train.f0 - 0.7 * train.f3 + 0.2 * train.f5 > 0).astype(int)
    model = LogisticRegression().fit(train, label)
    types = dict.fromkeys(FEATURES, "double")
    return _exported(model, tmp_path_factory.mktemp("bin"), types)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_one_value_decides_as_the_rules_evaluator(condition: str) -> None:
    two = cascade(("champion", condition), ("big", None), big="member")
    values = np.random.default_rng(8).uniform(-0.2, 1.2, 1500)
    values[::7], values[::11], values[::13] = np.nan, 0.5, 0.25
    arrow = two.answers(0, {"score": pa.array(values, pa.float64())})
    assert arrow.any() and not arrow.all()
    one = [two.answers_number(0, float(v)) for v in values]
    assert one == arrow.tolist()
    assert all(two.answers_number(1, float(v)) for v in values[:20])  # the last answers all


def test_a_dict_scores_as_the_same_row_in_a_list(binary: EmbeddedModel) -> None:
    records = _frame(300, 2).to_dict("records")
    records[3]["f2"] = None  # a null: NaN in, NaN out on both paths
    listed = binary.predict(records)
    assert math.isnan(listed[3]) and np.isfinite(np.delete(listed, 3)).all()
    for i, row in enumerate(records):
        np.testing.assert_array_equal(binary.score_row(row), listed[i])
        np.testing.assert_array_equal(binary.predict(row), listed[i : i + 1])


def test_a_regressor_and_a_model_with_string_inputs_score_a_dict_alike(tmp_path: Path) -> None:
    train = _frame(400, 3).assign(plan=lambda f: np.where(f.f1 > 0, "gold", "basic"))
    target = train.f0 * 2 + (train.plan == "gold") * 1.5
    onehot = OneHotEncoder(handle_unknown="ignore")
    pre = ColumnTransformer([("cat", onehot, ["plan"]), ("num", "passthrough", FEATURES)])
    pipe = Pipeline([("pre", pre), ("reg", LinearRegression())]).fit(train, target)
    types = dict.fromkeys(FEATURES, "double") | {"plan": "string"}
    model = _exported(pipe, tmp_path, types)
    assert model.spec.kind == "regression"
    assert "plan" in model.model.input_types  # one input per column, not a matrix
    records = _frame(50, 4).assign(plan="gold").to_dict("records")
    listed = model.predict(records)
    np.testing.assert_allclose(listed, pipe.predict(pd.DataFrame(records)), atol=1e-9)
    for i, row in enumerate(records):
        assert model.score_row(row) == listed[i]
        np.testing.assert_array_equal(model.predict(row), listed[i : i + 1])


def test_a_missing_feature_in_a_dict_is_named(binary: EmbeddedModel) -> None:
    row = {f: 0.1 for f in FEATURES if f != "f4"}
    with pytest.raises(InputValidationError, match="row 0 has no feature 'f4'"):
        binary.score_row(row)
    with pytest.raises(InputValidationError, match="row 0 has no feature 'f4'"):
        binary.predict(row)


def test_the_cascade_answers_one_dict_as_it_answers_it_in_a_list(binary: EmbeddedModel) -> None:
    """Decided rows only: the remote stage points nowhere and is never called."""
    sure = "score <= 0.3 or score >= 0.7"
    chain = EmbeddedCascade(
        [LocalStage("small", binary, sure)], RemoteStage("http://127.0.0.1:9", "big")
    )
    records = _frame(400, 5).to_dict("records")
    scores = binary.predict(records)
    decided = [r for r, s in zip(records, scores, strict=True) if s <= 0.3 or s >= 0.7]
    assert 50 < len(decided) < len(records)
    listed = chain.predict(decided)
    assert [chain.predict(row)[0] for row in decided] == listed
    assert {a.answered_by for a in listed} == {"small"}
    assert chain.requests == 0
