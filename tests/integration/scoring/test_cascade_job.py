"""Cascades through the scoring job (issue #28), on real Spark and a real registry: the served
score and ``answered_by`` equal a pandas evaluation of the stages on the same rows, on both
engines; the second stage receives only the rows the first left open (counted by the model
itself, in the Spark workers); a config error is exit 2 naming the stage."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import RUN_DATE, customers, labelled

from batch_serving.cli import main
from batch_serving.runs.job import run_score
from batch_serving.scoring.cascade import counted_stages
from batch_serving.scoring.cascade import from_config as cascade_from_config

cloudpickle.register_pickle_by_value(builders)
cloudpickle.register_pickle_by_value(sys.modules[__name__])
ENGINES = ["arrow_direct", "dataframe"]
SURE = "score <= 0.25 or score >= 0.75"
RULES = [{"when": "score >= 0.5", "action": "call"}, {"otherwise": "wait"}]


def read(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas().sort_values("customer_id").reset_index(drop=True)


class CountingScore(mlflow.pyfunc.PythonModel):
    """A pyfunc stage that leaves one file per call holding how many rows it was given."""

    def __init__(self, calls: str, scale: float) -> None:
        self.calls, self.scale = calls, scale

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        Path(self.calls, uuid.uuid4().hex).write_text(str(len(model_input)))
        raw = self.scale * model_input["tenure_months"] - 0.8 * model_input["support_calls"]
        return 1 / (1 + np.exp(-raw.to_numpy(np.float64) / 10))


def logistic(frame: pd.DataFrame, scale: float) -> np.ndarray:
    raw = scale * frame["tenure_months"] - 0.8 * frame["support_calls"]
    return np.asarray(1 / (1 + np.exp(-raw.to_numpy(np.float64) / 10)))


def counting_stages(tmp_path: Path, register: Any) -> tuple[dict[str, Path], str, str]:
    """A small and a big model, registered; each records under ``calls[name]`` the rows it
    received (so a test can count what every stage scored)."""
    calls = {name: tmp_path / f"calls_{name}" for name in ("small", "big")}
    for directory in calls.values():
        directory.mkdir()
    sample = customers(50)[["tenure_months", "support_calls"]]
    small_name, _ = register(CountingScore(str(calls["small"]), 0.3), sample, pyfunc=True)
    big_name, _ = register(CountingScore(str(calls["big"]), 0.1), sample, pyfunc=True)
    return calls, small_name, big_name


@pytest.mark.parametrize("engine", ENGINES)
def test_cascade_equals_the_pandas_evaluation_of_its_stages(
    spark, warehouse, job_config, register, engine: str
) -> None:
    small, small_oracle = builders.logreg_pipeline(labelled(300, seed=5))
    big, big_oracle = builders.logreg_pipeline(labelled(800))
    sample = customers(200)[builders.FEATURES]
    small_name, v_small = register(small, sample)
    big_name, v_big = register(big, sample)
    rows = customers(600)
    warehouse(rows)
    cfg = job_config(
        small_name,
        engine=engine,
        members={"big": {"name": big_name, "alias": "champion"}},
        cascade={"stages": [{"member": "champion", "answer_if": SURE}, {"member": "big"}]},
        rules=RULES,
    )
    result = run_score(spark, cfg, RUN_DATE)

    got = read(result.committed.path)
    ordered = rows.sort_values("customer_id").reset_index(drop=True)
    first, second = small_oracle(ordered)["score"], big_oracle(ordered)["score"]
    sure = (first <= 0.25) | (first >= 0.75)
    assert 0 < sure.sum() < len(ordered)
    expected = np.where(sure, first, second)
    assert len(got) == 600
    assert np.max(np.abs(got["score"].to_numpy() - expected)) <= 1e-12
    assert got["answered_by"].tolist() == ["champion" if s else "big" for s in sure]
    assert got["action"].tolist() == ["call" if s >= 0.5 else "wait" for s in expected]
    big_struct = pd.DataFrame(got["big"].tolist())
    assert big_struct["score"].isna().tolist() == sure.tolist()  # scored only the open rows
    assert np.max(np.abs(big_struct["score"][~sure] - second[~sure])) <= 1e-12
    assert set(big_struct["model_version"]) == {v_big}  # lineage on every row
    assert set(got["model_version"]) == {v_small}
    assert [(m.key, m.version) for m in result.manifest.members] == [
        ("champion", v_small),
        ("big", v_big),
    ]


def test_the_second_stage_receives_only_the_open_rows(
    spark, tmp_path, warehouse, job_config, register
) -> None:
    calls, small_name, big_name = counting_stages(tmp_path, register)
    rows = customers(500)
    warehouse(rows)
    cfg = job_config(
        small_name,
        members={"big": {"name": big_name, "alias": "champion"}},
        cascade={
            "stages": [
                {"member": "champion", "answer_if": "prediction <= 0.3 or prediction >= 0.7"},
                {"member": "big"},
            ]
        },
    )
    result = run_score(spark, cfg, RUN_DATE)
    got = read(result.committed.path)

    first = logistic(rows, 0.3)
    open_rows = int(((first > 0.3) & (first < 0.7)).sum())
    assert 0 < open_rows < 500

    def received(name: str) -> int:
        return sum(int(p.read_text()) for p in calls[name].iterdir())

    assert received("small") == 500
    assert received("big") == open_rows
    assert (got["answered_by"] == "big").sum() == open_rows
    # what a run can report from its output alone is what each stage's model received
    chain = cascade_from_config(cfg)
    assert chain is not None
    counted = counted_stages(chain, [pa.array(got["answered_by"])])
    assert [(r.member, r.seen, r.answered) for r in counted] == [
        ("champion", received("small"), 500 - open_rows),
        ("big", received("big"), open_rows),
    ]


def test_a_cascade_config_error_is_exit_2_naming_the_stage(tmp_path, job_config, capsys) -> None:
    data = job_config("m").model_dump(mode="json")
    data["members"] = {"big": {"name": "x", "alias": "c"}}
    data["cascade"] = {"stages": [{"member": "champion"}, {"member": "big"}]}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    assert code == 2
    assert (
        "cascade.stages[0].answer_if: stage 'champion' is not the last" in capsys.readouterr().err
    )
