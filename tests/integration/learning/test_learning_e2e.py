"""Online learning end to end with real components (issue #25): a Spark job scores two dates,
labels arrive for those customers, `batch-serving learn` matches them point in time to the
Spark-written predictions and features, learns and registers @challenger; the job then scores
with the challenger as a shadow member, `promote` moves @champion through the gates (or
refuses with exit 11), and `rollback` moves it back. Outcomes are read from the registry,
the MLflow runs and the committed partitions."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import builders
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import RUN_DATE, TEST_SPARK_CONF, customers, labelled, register_model
from mlflow import MlflowClient

from batch_serving import sample_data
from batch_serving.cli import main
from batch_serving.config import JobConfig
from batch_serving.learning.checkpoint import load_checkpoint
from batch_serving.learning.learner import OnlineLearner
from batch_serving.learning.promote import EXPERIMENT, PREVIOUS
from batch_serving.notebook import score_frame
from batch_serving.runs.job import run_score

NUMERIC = list(sample_data.NUMERIC)
DAY1, DAY2 = RUN_DATE - dt.timedelta(days=1), RUN_DATE
ROWS, LATE = 600, 100
# The labels follow a concept the champion never saw (tenure's effect reversed, usage new):
# a challenger that learns it beats the champion; one that learns inverted labels does not.
DRIFT = np.array([0.8, 0.0, 0.0, 0.9, 1.2])
LEARNING_RATE = 0.05


@pytest.fixture(autouse=True)
def _quiet_mlflow_validation(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mlflow.models.evaluation.validation")


@dataclass(frozen=True)
class Scored:
    """Two dates scored by the champion on Spark; the features of each date."""

    cfg: JobConfig
    job_file: Path
    champion: int
    features: dict[dt.date, pd.DataFrame]

    @property
    def name(self) -> str:
        return self.cfg.model.name

    def with_shadow(self) -> JobConfig:
        """The same job with the challenger as a shadow member."""
        data = self.cfg.model_dump(mode="json")
        shadow = {"name": self.name, "alias": "challenger", "role": "shadow"}
        return JobConfig.model_validate({**data, "members": {"challenger": shadow}})


@pytest.fixture(scope="module")
def scored(spark: Any, tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Scored:
    root = tmp_path_factory.mktemp("learning_e2e")
    model, _ = builders.logreg_pipeline(labelled(800))
    name, version = register_model(tracking_uri, model, customers(300)[builders.FEATURES])
    cfg = JobConfig.model_validate(
        {
            "job": "learning_e2e",
            "model": {"name": name, "alias": "champion", "tracking_uri": tracking_uri},
            "input": {"path": str(root / "warehouse")},
            "entity_columns": [sample_data.ENTITY],
            "output": {"root": str(root / "out")},
            "spark": {"master": "local[2]", "conf": TEST_SPARK_CONF},
            "catalog": {"enabled": False},
            "tracking": {"log_runs": False},
        }
    )
    features = {}
    for seed, day in enumerate((DAY1, DAY2), start=10):
        features[day] = customers(ROWS, seed=seed)  # the same customers, new values each day
        sample_data.write_partition(root / "warehouse", day, features[day])
        run_score(spark, cfg, day)
    job_file = root / "job.yaml"
    job_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return Scored(cfg, job_file, version, features)


def concept(rows: pd.DataFrame, seed: int, invert: bool = False) -> np.ndarray:
    """0/1 outcomes of the drifted concept for these feature rows."""
    x = rows[NUMERIC].to_numpy(np.float64)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    p = 1 / (1 + np.exp(-(z @ DRIFT - 0.3)))
    y = (np.random.default_rng(seed).random(len(rows)) < p).astype(np.int64)
    return 1 - y if invert else y


def events(day: dt.date, n: int, start_hour: int, seed: int, hours: int = 12) -> pd.Series:
    """Distinct event times within ``hours`` from ``start_hour`` of ``day`` (UTC)."""
    rng = np.random.default_rng(seed)
    seconds = rng.choice(hours * 3600, n, replace=False)
    base = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=start_hour)
    return pd.Series(base + pd.to_timedelta(seconds, unit="s"))


def write_labels(root: Path, ds: dt.date, frame: pd.DataFrame) -> None:
    sample_data.write_partition(root, ds, frame, files=1)


@dataclass(frozen=True)
class Labels:
    """The labels table and, per label partition, the rows the learner must see (the label
    with the features of the prediction it was matched to)."""

    root: Path
    learned: dict[dt.date, pd.DataFrame]


def labels_table(root: Path, scored: Scored, invert: bool = False) -> Labels:
    """ds=DAY1: every customer's outcome on DAY1 (00:00-12:00). ds=DAY2: every outcome on
    DAY2, plus LATE outcomes of DAY1 evenings (18:00-) that arrived a day late: those belong
    to DAY1's prediction and features, although DAY2's prediction exists when they are read."""
    day1, day2 = scored.features[DAY1], scored.features[DAY2]
    on_day1 = day1.assign(label=concept(day1, 1, invert), event_time=events(DAY1, ROWS, 0, 1))
    on_day2 = day2.assign(label=concept(day2, 2), event_time=events(DAY2, ROWS, 0, 2))
    late = day1.iloc[:LATE].assign(
        label=concept(day1.iloc[:LATE], 3, invert), event_time=events(DAY1, LATE, 18, 3, hours=6)
    )
    columns = [sample_data.ENTITY, "label", "event_time"]
    write_labels(root, DAY1, on_day1[columns])
    write_labels(root, DAY2, pd.concat([on_day2, late])[columns])
    return Labels(root, {DAY1: on_day1, DAY2: pd.concat([late, on_day2])})


def learning_file(tmp_path: Path, labels: Path, **gates: Any) -> Path:
    learning = {
        "labels": {"path": str(labels), "prediction_time_column": "ds", "lookback_days": 2},
        "learner": {"features": NUMERIC, "learning_rate": LEARNING_RATE},
        "checkpoint": str(tmp_path / "checkpoint" / "learner.pkl"),
        "evaluation_days": 1,
        "gates": {"min_rows": 200, "max_ece": 0.1, "max_score_psi": None, "max_flip_rate": None}
        | gates,
    }
    path = tmp_path / "learning.yaml"
    path.write_text(yaml.safe_dump(learning))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the command with --json; its exit code, its record (empty on failure), stderr."""
    capsys.readouterr()
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def in_loop_order(rows: pd.DataFrame) -> pd.DataFrame:
    """The learning loop's total order: (event time, entity id as text)."""
    keyed = rows.assign(key=rows[sample_data.ENTITY].astype(str))
    return keyed.sort_values(["event_time", "key"]).reset_index(drop=True)


def aliases(tracking_uri: str, name: str) -> dict[str, int]:
    model = MlflowClient(tracking_uri).get_registered_model(name)
    return {alias: int(v) for alias, v in model.aliases.items()}


def test_learn_shadow_promote_rollback_on_spark_written_predictions(
    spark: Any, scored: Scored, tracking_uri: str, tmp_path: Path, capsys: Any
) -> None:
    labels = labels_table(tmp_path / "labels", scored)
    learning = learning_file(tmp_path, labels.root)
    args = ["--config", str(scored.job_file), "--learning", str(learning)]
    client = MlflowClient(tracking_uri)
    before = aliases(tracking_uri, scored.name)

    # learn DAY1: every label matched to DAY1's prediction and features, then @challenger
    code, learned, err = cli(capsys, "learn", *args, "--run-date", str(DAY1))
    assert code == 0, err
    assert (learned["labels"], learned["unmatched"], learned["without_features"]) == (ROWS, 0, 0)
    assert (learned["learned"], learned["total_learned"]) == (ROWS, ROWS)
    assert learned["days"] == [str(DAY1)]
    challenger = learned["snapshot"]["version"]
    assert aliases(tracking_uri, scored.name) == {**before, "challenger": challenger}
    tags = client.get_model_version(scored.name, str(challenger)).tags
    assert tags["bs.labels_learned"] == str(ROWS) and tags["bs.learner"] == "sgd_logistic"
    expected = OnlineLearner(tuple(NUMERIC), learning_rate=LEARNING_RATE)
    day1 = in_loop_order(labels.learned[DAY1])
    expected.learn(day1[NUMERIC].to_numpy(np.float64), day1["label"].to_numpy())
    checkpoint = load_checkpoint(Path(learned["checkpoint"]))
    assert checkpoint is not None and checkpoint.snapshot_version == challenger
    np.testing.assert_allclose(checkpoint.learner.model.coef_, expected.model.coef_, atol=1e-12)

    # the same day again learns nothing and registers nothing
    code, again, _ = cli(capsys, "learn", *args, "--run-date", str(DAY1))
    assert code == 0
    assert (again["learned"], again["already_learned"], again["snapshot"]) == (0, ROWS, None)

    # the nightly job with the challenger as a shadow: its column is the registered version
    # scored alone in-process; the served score is still the champion's
    result = run_score(spark, scored.with_shadow(), DAY2)
    got = pq.read_table(result.committed.path).to_pandas().sort_values(sample_data.ENTITY)
    rows = scored.features[DAY2].sort_values(sample_data.ENTITY)
    shadow = pd.DataFrame(got["challenger"].tolist())
    alone = score_frame(
        rows[NUMERIC].reset_index(drop=True),
        f"models:/{scored.name}/{challenger}",
        tracking_uri=tracking_uri,
        keep=[],
    )
    assert isinstance(alone, pd.DataFrame)
    np.testing.assert_allclose(shadow["score"], alone["score"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        shadow["score"], expected.predict_proba(rows[NUMERIC].to_numpy(np.float64)), atol=1e-12
    )
    assert set(shadow["model_version"]) == {challenger}
    assert set(got["model_version"]) == {scored.champion}
    assert [(m.key, m.role, m.version) for m in result.manifest.members] == [
        ("champion", "champion", scored.champion),
        ("challenger", "shadow", challenger),
    ]

    # promote on DAY2's labels (not learned by the challenger): every gate passes
    code, promoted, err = cli(capsys, "promote", *args, "--run-date", str(DAY2), "--actor", "e2e")
    assert code == 0, err
    assert promoted["promoted"] is True
    assert (promoted["champion"], promoted["replaced"]) == (challenger, before["champion"])
    assert aliases(tracking_uri, scored.name)["champion"] == challenger
    run = client.get_run(promoted["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.tags["bs.outcome"] == "promoted" and run.data.tags["bs.actor"] == "e2e"
    assert run.data.params["rows"] == str(ROWS + LATE)
    assert run.data.params["data_from"] == run.data.params["data_to"] == str(DAY2)
    assert run.data.metrics["challenger_roc_auc"] > run.data.metrics["champion_roc_auc"] + 0.1
    version_tags = client.get_model_version(scored.name, str(challenger)).tags
    assert version_tags["bs.promoted_by"] == "e2e"
    assert version_tags["bs.promotion_run"] == promoted["run_id"]
    assert version_tags["bs.replaced_version"] == str(before["champion"])

    # rollback: @champion back to the replaced version, recorded; then nothing to roll back
    code, back, err = cli(capsys, "rollback", *args, "--actor", "oncall")
    assert code == 0, err
    assert (back["rolled_back_from"], back["champion"]) == (challenger, before["champion"])
    assert aliases(tracking_uri, scored.name)["champion"] == before["champion"]
    assert client.get_run(back["run_id"]).data.tags["bs.action"] == "rollback"
    assert PREVIOUS not in client.get_registered_model(scored.name).tags
    assert cli(capsys, "rollback", *args)[0] == 3

    # learn DAY2: the late DAY1 outcomes get DAY1's features (point in time), DAY2's its own
    code, learned, err = cli(capsys, "learn", *args, "--run-date", str(DAY2))
    assert code == 0, err
    assert (learned["labels"], learned["learned"]) == (ROWS + LATE, ROWS + LATE)
    assert learned["unmatched"] == learned["without_features"] == 0
    assert learned["days"] == [str(DAY1), str(DAY2)]
    for day in learned["days"]:  # the loop learns one batch per event day
        batch = in_loop_order(labels.learned[DAY2])
        batch = batch[batch["event_time"].dt.date == dt.date.fromisoformat(day)]
        expected.learn(batch[NUMERIC].to_numpy(np.float64), batch["label"].to_numpy())
    checkpoint = load_checkpoint(Path(learned["checkpoint"]))
    assert checkpoint is not None and checkpoint.learned == 2 * ROWS + LATE
    np.testing.assert_allclose(checkpoint.learner.model.coef_, expected.model.coef_, atol=1e-12)
    assert learned["snapshot"]["version"] > challenger


def test_a_degraded_challenger_is_refused_with_exit_11_naming_the_gate(
    scored: Scored, tracking_uri: str, tmp_path: Path, capsys: Any
) -> None:
    labels = labels_table(tmp_path / "labels", scored, invert=True)  # learns the opposite
    args = [
        "--config",
        str(scored.job_file),
        "--learning",
        str(learning_file(tmp_path, labels.root)),
    ]

    code, learned, err = cli(capsys, "learn", *args, "--run-date", str(DAY1), "--no-snapshot")
    assert code == 0, err
    assert learned["learned"] == ROWS and learned["snapshot"] is None
    code, registered, _ = cli(capsys, "snapshot", *args)
    assert code == 0 and registered["snapshot"]["alias"] == "challenger"
    challenger = registered["snapshot"]["version"]
    assert cli(capsys, "snapshot", *args)[1]["snapshot"] is None  # nothing new since
    before = aliases(tracking_uri, scored.name)
    assert before["challenger"] == challenger

    code, _, err = cli(capsys, "promote", *args, "--run-date", str(DAY2), "--actor", "e2e")
    assert code == 11
    assert f"promotion of {scored.name} version {challenger}" in err
    assert "roc_auc FAILED: challenger 0." in err
    assert aliases(tracking_uri, scored.name) == before  # @champion did not move
    client = MlflowClient(tracking_uri)
    refused = client.get_model_version(scored.name, str(challenger)).tags["bs.refused_by_run"]
    run = client.get_run(refused)
    assert run.data.tags["bs.outcome"] == "refused"
    assert "roc_auc" in run.data.tags["bs.failed_gates"].split(",")
    assert run.data.metrics["gate_roc_auc_passed"] == 0.0
