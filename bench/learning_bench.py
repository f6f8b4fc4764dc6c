"""Online learning costs: the learner's throughput, and the challenger shadow in a nightly run.

    .venv/bin/python bench/learning_bench.py [--only learner|shadow] [--events 200000]
        [--features 10] [--rows 200000] [--rounds 3]

Part "learner": ``OnlineLearner.learn`` by day-sized batches (how ``learning.loop`` calls it)
and, for the choice of learner, one event at a time, and river's ``StandardScaler |
LogisticRegression`` ``learn_one`` loop when river is importable. Target: >= 20k events/s.

Part "shadow": the whole score job (read, validate, score, write, commit; Spark local[2]) of
--rows customers with the champion alone vs with a registered learner snapshot as its
``role: shadow`` member (what the learning DAG's shadow task and a nightly run with the
challenger do). One warm-up run of each on a small date, then --rounds interleaved rounds
(order reversed every other round); medians of the wall times and of the per-round ratios.
The catalog and the MLflow run record are off in both (constant costs that would only shrink
the ratio). The shadow's scores are checked against the learner (max abs difference).
Data, registry and models are cached under ``.bench_data/learning``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from batch_serving.learning.learner import OnlineLearner

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".bench_data" / "learning"
RUN_DATE, WARM_DATE = dt.date(2026, 1, 10), dt.date(2026, 1, 9)
WARM_ROWS = 5_000


def rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f} events/s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["learner", "shadow"])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10_000, help="events per learn call")
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the shadow part's job")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (shadow part)")
    args = parser.parse_args()
    if args.only != "shadow":
        learner_part(args)
    if args.only != "learner":
        shadow_part(args.rows, args.rounds)


def learner_part(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.events, args.features))
    y = (x @ rng.normal(size=args.features) + rng.logistic(size=args.events) > 0).astype(int)
    names = tuple(f"f{i}" for i in range(args.features))

    learner = OnlineLearner(names)
    start = time.perf_counter()
    for i in range(0, args.events, args.batch):
        learner.learn(x[i : i + args.batch], y[i : i + args.batch])
    print(f"learn by batches of {args.batch}: {rate(args.events, time.perf_counter() - start)}")

    one = min(args.events, 20_000)
    learner = OnlineLearner(names)
    start = time.perf_counter()
    for i in range(one):
        learner.learn(x[i : i + 1], y[i : i + 1])
    print(f"learn one event per call: {rate(one, time.perf_counter() - start)}")

    try:
        from river import linear_model, preprocessing
    except ImportError:
        print("river not installed: skipped")
        return
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    rows = [dict(zip(names, r, strict=True)) for r in x[:one].tolist()]
    start = time.perf_counter()
    for row, label in zip(rows, y[:one].tolist(), strict=True):
        model.learn_one(row, label)
    print(f"river learn_one: {rate(one, time.perf_counter() - start)}")


def shadow_part(rows: int, rounds: int) -> None:
    """Whole job with vs without the challenger shadow, interleaved rounds, medians."""
    from batch_serving.config import JobConfig, SparkConfig
    from batch_serving.runs.job import run_score
    from batch_serving.spark.session import build_session

    home = DATA / f"{rows}"
    tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
    name, learner = shadow_models(home, tracking_uri)
    for day, n in ((WARM_DATE, WARM_ROWS), (RUN_DATE, rows)):
        warehouse(home / "warehouse", day, n)
    spark_conf = {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"}
    base: dict[str, Any] = {
        "job": "learning_bench",
        "model": {"name": name, "alias": "champion", "tracking_uri": tracking_uri},
        "input": {"path": str(home / "warehouse")},
        "entity_columns": ["customer_id"],
        "output": {"root": str(home / "out")},
        "spark": {"master": "local[2]", "conf": spark_conf},
        "catalog": {"enabled": False},
        "tracking": {"log_runs": False},
    }
    shadow = {"challenger": {"name": name, "alias": "challenger", "role": "shadow"}}
    cfgs = {
        "champion alone": JobConfig.model_validate(base),
        "with challenger shadow": JobConfig.model_validate({**base, "members": shadow}),
    }
    spark = build_session(SparkConfig(master="local[2]", conf=spark_conf), "learning_bench")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        for cfg in cfgs.values():
            run_score(spark, cfg, WARM_DATE)
        walls: dict[str, list[float]] = {k: [] for k in cfgs}
        last: Any = None
        for round_ in range(rounds):
            order = list(cfgs.items())
            for key, cfg in order if round_ % 2 == 0 else reversed(order):
                gc.collect()
                start = time.perf_counter()
                result = run_score(spark, cfg, RUN_DATE)
                walls[key].append(time.perf_counter() - start)
                print(f"[bench] {key} round {round_ + 1}/{rounds}: {walls[key][-1]:.2f} s")
                if key == "with challenger shadow":
                    last = result
    finally:
        spark.stop()
    error = shadow_error(last, learner, home / "warehouse" / f"ds={RUN_DATE}")
    report_shadow(walls, rows, rounds, error)


def shadow_models(home: Path, tracking_uri: str) -> tuple[str, OnlineLearner]:
    """The champion (scaler + one-hot + LogReg on every feature, registered once) and a
    learner trained on the same rows, registered as @challenger by the real snapshot path
    (a new version each bench run)."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from batch_serving import sample_data
    from batch_serving.learning.checkpoint import Checkpoint
    from batch_serving.learning.snapshots import register_snapshot

    name = "learning_bench"
    home.mkdir(parents=True, exist_ok=True)
    train = sample_data.customer_features(20_000, seed=1)
    numeric, features = list(sample_data.NUMERIC), list(sample_data.FEATURES)
    client = MlflowClient(tracking_uri)
    if not client.search_registered_models(f"name = '{name}'"):
        pre = ColumnTransformer(
            [
                ("num", StandardScaler(), numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(sample_data.CATEGORICAL)),
            ]
        )
        model = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=300))])
        model.fit(train[features], train["churned"])
        mlflow.set_tracking_uri(tracking_uri)
        artifacts = (home / "artifacts").as_uri()
        experiment = client.get_experiment_by_name("bench")
        mlflow.set_experiment(
            experiment_id=experiment.experiment_id
            if experiment
            else client.create_experiment("bench", artifact_location=artifacts)
        )
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(train[features].head(100)),
                registered_model_name=name,
            )
        client.set_registered_model_alias(name, "champion", str(info.registered_model_version))
    learner = OnlineLearner(tuple(numeric))
    learner.learn(train[numeric].to_numpy(np.float64), train["churned"].to_numpy())
    register_snapshot(Checkpoint(learner), name, tracking_uri, alias="challenger")
    return name, learner


def warehouse(root: Path, day: dt.date, rows: int) -> None:
    from batch_serving import sample_data

    if (root / f"ds={day}" / "_SUCCESS").exists():
        return
    frame = sample_data.customer_features(rows, seed=day.toordinal()).drop(columns=["churned"])
    sample_data.write_partition(root, day, frame, files=4)


def shadow_error(result: Any, learner: OnlineLearner, inputs: Path) -> float:
    """Max |shadow score - learner score| over the last shadow run's rows (by customer)."""
    import pandas as pd
    import pyarrow.parquet as pq

    got = pq.read_table(result.committed.path).to_pandas()
    got = got.assign(shadow=pd.DataFrame(got["challenger"].tolist())["score"].to_numpy())
    rows = pq.read_table(inputs).to_pandas().merge(got[["customer_id", "shadow"]])
    expected = learner.predict_proba(rows[list(learner.features)].to_numpy(np.float64))
    return float(np.max(np.abs(rows["shadow"].to_numpy() - expected)))


def report_shadow(walls: dict[str, list[float]], rows: int, rounds: int, error: float) -> None:
    alone, shadow = walls["champion alone"], walls["with challenger shadow"]
    ratios = [s / a for s, a in zip(shadow, alone, strict=True)]
    print(f"\nshadow cost, whole job, {rows:,} rows, local[2], median of {rounds} rounds:")
    print("| job | median s | rounds s |")
    print("|---|---|---|")
    for key, times in walls.items():
        each = ", ".join(f"{t:.2f}" for t in times)
        print(f"| {key} | {statistics.median(times):.2f} | {each} |")
    print(
        f"median ratio (per round): {statistics.median(ratios):.3f}x "
        f"(rounds {', '.join(f'{r:.3f}' for r in ratios)}); ratio of medians "
        f"{statistics.median(shadow) / statistics.median(alone):.3f}x; "
        f"shadow vs learner max abs diff {error:.2e}"
    )


if __name__ == "__main__":
    main()
