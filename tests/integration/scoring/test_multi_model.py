"""Several models in one pass (issue #11), oracle style on real Spark and a real registry:
each member equals that model alone, the ensemble and the actions equal a pandas computation
of the same rules on in-process scores, shadows never touch what is served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import builders
import cloudpickle
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import RUN_DATE, customers, labelled

from batch_serving.cli import main
from batch_serving.runs.job import run_score

cloudpickle.register_pickle_by_value(builders)
ENGINES = ["arrow_direct", "dataframe"]
RULES = [
    {"when": "ensemble.score >= 0.6", "action": "block"},
    {"when": "ensemble.score >= 0.3 or champion.score >= 0.5", "action": "review"},
    {"otherwise": "allow"},
]


def read(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas().sort_values("customer_id").reset_index(drop=True)


def actions(score: np.ndarray, champion: np.ndarray) -> list[str]:
    """The rules above, row by row, as a reviewer would write them."""
    out = []
    for s, c in zip(score, champion, strict=True):
        out.append("block" if s >= 0.6 else "review" if (s >= 0.3 or c >= 0.5) else "allow")
    return out


class Models:
    """Champion, challenger (shadow) and a second stage reading the champion's score."""

    def __init__(self, register: Any) -> None:
        train = labelled(800)
        self.champion, self.oracle = builders.logreg_pipeline(train)
        self.challenger, self.challenger_oracle = builders.logreg_pipeline(labelled(800, seed=9))
        self.stage, self.stage_oracle = builders.on_champion_score(train, self.champion)
        rows = customers(300)
        self.name, self.v1 = register(self.champion, rows[builders.FEATURES])
        _, self.v2 = register(
            self.challenger, rows[builders.FEATURES], name=self.name, alias="challenger"
        )
        stage_sample = pd.DataFrame(
            {"champion_score": np.linspace(0, 1, 50), "tenure_months": np.arange(50)}
        )
        self.stage_name, _ = register(self.stage, stage_sample)

    def config(self, job_config: Any, **overrides: Any) -> Any:
        return job_config(
            self.name,
            members={
                "challenger": {"name": self.name, "alias": "challenger", "role": "shadow"},
                "tenure_adj": {
                    "name": self.stage_name,
                    "alias": "champion",
                    "inputs": ["champion.score", "tenure_months"],
                },
            },
            ensemble={
                "members": ["champion", "tenure_adj"],
                "method": "weighted_mean",
                "weights": [0.7, 0.3],
            },
            rules=RULES,
            **overrides,
        )


@pytest.fixture
def models(register) -> Models:  # type: ignore[no-untyped-def]
    return Models(register)


@pytest.mark.parametrize("engine", ENGINES)
def test_members_ensemble_and_rules_equal_the_in_process_oracle(
    spark, warehouse, job_config, models: Models, engine: str
) -> None:
    rows = customers(700)
    warehouse(rows)
    result = run_score(spark, models.config(job_config, engine=engine), RUN_DATE)

    got = read(result.committed.path)
    ordered = rows.sort_values("customer_id").reset_index(drop=True)
    champion = models.oracle(ordered)["score"]
    challenger = models.challenger_oracle(ordered)["score"]
    stage = models.stage_oracle(ordered)["score"]
    ensemble = 0.7 * champion + 0.3 * stage
    assert len(got) == 700
    member = {k: pd.DataFrame(got[k].tolist()) for k in ("champion", "challenger", "tenure_adj")}
    assert np.max(np.abs(member["champion"]["score"] - champion)) <= 1e-12
    assert np.max(np.abs(member["challenger"]["score"] - challenger)) <= 1e-12
    assert np.max(np.abs(member["tenure_adj"]["score"] - stage)) <= 1e-12
    assert np.max(np.abs(got["score"] - ensemble)) <= 1e-12
    assert got["action"].tolist() == actions(ensemble, champion)
    # the challenger's would-be action: the same rules with it in the champion's place
    would_be = 0.7 * challenger + 0.3 * stage
    assert member["challenger"]["action"].tolist() == actions(would_be, challenger)
    assert set(member["challenger"]["model_version"]) == {models.v2}
    assert set(member["champion"]["model_version"]) == {models.v1}
    assert set(got["model_version"]) == {models.v1}

    manifest = result.manifest
    assert [(m.key, m.role, m.version) for m in manifest.members] == [
        ("champion", "champion", models.v1),
        ("challenger", "shadow", models.v2),
        ("tenure_adj", "member", 1),
    ]
    for m in manifest.members:  # each model loaded at most once per Python worker
        assert m.model_loads == m.python_workers >= 1
    compared = manifest.comparison["challenger"]
    champion_actions = actions(ensemble, champion)
    agree = np.mean(np.array(champion_actions) == np.array(member["challenger"]["action"]))
    assert compared["agreement"] == pytest.approx(agree, abs=1e-12)
    assert compared["correlation"] == pytest.approx(np.corrcoef(champion, challenger)[0, 1])
    assert compared["mean_abs_diff"] == pytest.approx(np.mean(np.abs(champion - challenger)))
    flips = pd.crosstab(np.array(champion_actions), member["challenger"]["action"].to_numpy())
    assert compared["flips"]["allow"]["allow"] == flips.loc["allow", "allow"]


def test_shadow_never_changes_served_columns(
    spark, tmp_path, register, warehouse, job_config, models: Models
) -> None:
    rows = customers(400)
    warehouse(rows)
    first = read(run_score(spark, models.config(job_config), RUN_DATE).committed.path)
    other, _ = builders.forest_classifier(labelled(600))
    register(
        other,
        rows[builders.FEATURES],
        name=models.name,
        alias="challenger",
        trusted=builders.TREE_TRUSTED,
    )
    again = run_score(spark, models.config(job_config), RUN_DATE)
    second = read(again.committed.path)

    served = ["customer_id", "score", "action", "champion", "tenure_adj"]
    pd.testing.assert_frame_equal(first[served], second[served])
    assert not first["challenger"].equals(second["challenger"])
    assert again.manifest.comparison["challenger"]["correlation"] != pytest.approx(
        np.corrcoef(
            pd.DataFrame(first["champion"].tolist())["score"],
            pd.DataFrame(first["challenger"].tolist())["score"],
        )[0, 1]
    )


def test_a_failing_member_quarantines_its_rows_once_with_its_name(
    spark, tmp_path, register, warehouse, job_config, models: Models, capsys
) -> None:
    rows = customers(400)
    warehouse(rows)
    picky, _ = register(
        builders.RejectsManyCalls(), rows[["tenure_months", "support_calls"]], pyfunc=True
    )
    cfg = job_config(
        models.name,
        members={"picky": {"name": picky, "alias": "champion"}},
        rules=[{"when": "champion.score >= 0.5", "action": "call"}, {"otherwise": "wait"}],
        validation={"max_bad_rows": "50%"},
    )
    result = run_score(spark, cfg, RUN_DATE)

    expected_bad = sorted(rows.loc[rows["support_calls"] > 3, "customer_id"])
    assert expected_bad
    q = pq.read_table(Path(cfg.output.root) / "quarantine" / models.name / f"ds={RUN_DATE}")
    q = q.to_pandas().sort_values("customer_id")
    assert q["customer_id"].tolist() == expected_bad  # once each
    assert set(q["error_member"]) == {"picky"} and set(q["error_class"]) == {"ValueError"}
    got = read(result.committed.path)
    assert len(got) + len(q) == 400 and not got["customer_id"].isin(expected_bad).any()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "members": {
                    "a": {"name": "x", "alias": "c", "inputs": ["b.score"]},
                    "b": {"name": "x", "alias": "c", "inputs": ["a.score"]},
                }
            },
            "cycle in inputs: a -> b -> a",
        ),
        (
            {"members": {"a": {"name": "x", "alias": "c", "inputs": ["nobody.score"]}}},
            "unknown reference 'nobody.score'",
        ),
        (
            {"rules": [{"when": "champion.score => 0.5", "action": "x"}, {"otherwise": "y"}]},
            "unknown operator '=>'",
        ),
        ({"rules": [{"when": "champion.score >= 0.5", "action": "x"}]}, "otherwise"),
        (
            {
                "members": {"s": {"name": "x", "alias": "c", "role": "shadow"}},
                "ensemble": {"members": ["champion", "s"], "method": "mean"},
            },
            "'s' is a shadow",
        ),
    ],
)
def test_config_errors_exit_2_naming_the_reference(
    tmp_path, job_config, capsys, change: dict[str, Any], message: str
) -> None:
    data = job_config("m").model_dump(mode="json")
    data.update(change)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_rule_on_an_output_no_member_has_is_exit_2_before_reading(
    spark, tmp_path, warehouse, job_config, models: Models, capsys
) -> None:
    warehouse(customers(100))
    cfg = models.config(job_config)
    data = cfg.model_dump(mode="json")
    data["rules"] = [{"when": "tenure_adj.prediction > 1", "action": "x"}, {"otherwise": "y"}]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    err = capsys.readouterr().err
    assert code == 2 and "tenure_adj.prediction" in err and "tenure_adj.score" in err
    assert not (Path(cfg.output.root) / "predictions").exists()


def test_check_input_resolves_every_member(
    tmp_path, warehouse, job_config, models: Models, capsys
) -> None:
    warehouse(customers(100))
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(models.config(job_config).model_dump(mode="json")))
    code = main(["check-input", "--config", str(path), "--run-date", str(RUN_DATE)])
    out = capsys.readouterr().out
    assert code == 0, out
    for key, version in (("champion", models.v1), ("challenger", models.v2)):
        assert f"model    : {key} models:/{models.name}/{version}" in out
    assert f"model    : tenure_adj models:/{models.stage_name}/1" in out


def test_pipeline_input_of_the_wrong_type_is_exit_2_before_reading(
    spark, tmp_path, warehouse, job_config, models: Models, register, capsys
) -> None:
    """A multi-class member's string label fed where the next stage expects a number."""
    warehouse(customers(100))
    train = labelled(300)
    contract_model, _ = builders.multiclass(train)
    contract_name, _ = register(contract_model, train[builders.NUMERIC])
    data = models.config(job_config).model_dump(mode="json")
    data["members"]["contract"] = {"name": contract_name, "alias": "champion"}
    data["members"]["tenure_adj"]["inputs"] = ["contract.predicted_label", "tenure_months"]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "'contract.predicted_label' is string" in err
    assert f"feature 'champion_score' of models:/{models.stage_name}/1 expects double" in err
    assert not (tmp_path / "out" / "predictions").exists()


def test_comparison_goes_into_the_mlflow_run_record(
    spark, tmp_path, warehouse, job_config, models: Models
) -> None:
    from mlflow import MlflowClient

    warehouse(customers(300))
    experiment = f"compare-{models.name}"
    cfg = models.config(job_config, tracking={"log_runs": True, "experiment": experiment})
    result = run_score(spark, cfg, RUN_DATE)
    compared = result.manifest.comparison["challenger"]
    client = MlflowClient(tracking_uri=cfg.model.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    (run,) = client.search_runs([found.experiment_id])
    assert run.info.run_id == result.after.mlflow_run_id
    for key in ("agreement", "correlation", "mean_abs_diff"):
        assert run.data.metrics[f"shadow_challenger_{key}"] == pytest.approx(compared[key])
    assert 0.5 < compared["agreement"] <= 1.0
