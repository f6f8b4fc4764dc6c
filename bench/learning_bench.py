"""Online learner throughput: labelled events learned per second on one core.

    .venv/bin/python bench/learning_bench.py [--events 200000] [--features 10]

Measures ``OnlineLearner.learn`` by day-sized batches (how ``learning.loop`` calls it) and,
for the choice of learner, one event at a time, and river's ``StandardScaler |
LogisticRegression`` ``learn_one`` loop when river is importable. Target: >= 20k events/s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from batch_serving.learning.learner import OnlineLearner


def rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f} events/s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10_000, help="events per learn call")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
