"""``score_bench.py --only delta``: the same LogReg job writing a Delta table vs Parquet
partitions, both engines, same session, interleaved rounds, median.

Reported per engine: the whole run's wall time in each format, their ratio, and the Delta
run's ``commit`` step (the transaction: delta-rs adds the staged files to the log, replacing
the date) as a share of its wall time. Targets (2M rows): the Delta commit <= 5% of the job.
Every Delta run's rows are compared with the Parquet run's (same ids, same scores).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from batch_serving.config import JobConfig
from batch_serving.notebook import read_predictions
from batch_serving.runs.job import RunResult, run_score

RUN_DATE = dt.date(2026, 1, 1)
ENGINES = ("arrow_direct", "dataframe")
FORMATS = ("parquet", "delta")


def measure_delta(
    bench: Any,
    rows: int,
    reps: int,
    job_dict: Callable[..., dict[str, Any]],
    warm_date: dt.date,
) -> dict[str, Any]:
    cfgs: dict[tuple[str, str], JobConfig] = {}
    for engine in ENGINES:
        for fmt in FORMATS:
            job = job_dict("logreg", bench.tracking_uri, bench.table_root, engine)
            job["job"] = f"bench_delta_{engine}_{fmt}"
            job["output"] = {"root": str(bench.scratch / f"delta-{engine}-{fmt}"), "format": fmt}
            cfgs[(engine, fmt)] = JobConfig.model_validate(job)
    for cfg in cfgs.values():  # warm-up: workers load the model, Delta tables exist
        run_score(bench.spark, cfg, warm_date)
    walls: dict[tuple[str, str], list[float]] = {key: [] for key in cfgs}
    commits: dict[tuple[str, str], list[float]] = {key: [] for key in cfgs}
    last: dict[tuple[str, str], RunResult] = {}
    order = list(cfgs.items())
    for round_ in range(reps):
        for key, cfg in order if round_ % 2 == 0 else reversed(order):
            print(f"[delta] {key[0]} {key[1]} round {round_ + 1}/{reps} ...", flush=True)
            start = time.perf_counter()
            last[key] = run_score(bench.spark, cfg, RUN_DATE)
            walls[key].append(time.perf_counter() - start)
            commits[key].append(last[key].after.durations_s.get("commit", float("nan")))
    out: dict[str, Any] = {"engines": {}}
    for engine in ENGINES:
        pq_s = statistics.median(walls[(engine, "parquet")])
        dl_s = statistics.median(walls[(engine, "delta")])
        share = [
            c / w for c, w in zip(commits[(engine, "delta")], walls[(engine, "delta")], strict=True)
        ]
        out["engines"][engine] = {
            "parquet_s": round(pq_s, 3),
            "delta_s": round(dl_s, 3),
            "ratio": round(dl_s / pq_s, 3),
            "delta_commit_s": round(statistics.median(commits[(engine, "delta")]), 3),
            "parquet_commit_s": round(statistics.median(commits[(engine, "parquet")]), 3),
            "delta_commit_share_median": round(statistics.median(share), 4),
            "delta_commit_share_max": round(max(share), 4),
            "delta_version": last[(engine, "delta")].committed.version,
            "max_abs_diff": _diff(cfgs[(engine, "delta")], cfgs[(engine, "parquet")]),
            "rows": last[(engine, "delta")].manifest.output.rows,
            "runs": {fmt: [round(t, 3) for t in walls[(engine, fmt)]] for fmt in FORMATS},
        }
    return out


def _scores(cfg: JobConfig) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) of the date's committed rows, read the way users read them."""
    table = read_predictions(cfg, RUN_DATE, columns=["id", "score"])
    ids = table.column("id").to_numpy()
    order = np.argsort(ids)
    return ids[order], table.column("score").to_numpy()[order]


def _diff(delta: JobConfig, parquet: JobConfig) -> float:
    d_ids, d_scores = _scores(delta)
    p_ids, p_scores = _scores(parquet)
    if not np.array_equal(d_ids, p_ids):
        return float("nan")  # different rows are a failure, not a small difference
    return float(np.max(np.abs(d_scores - p_scores)))


def render_delta(r: dict[str, Any], scale: str, rows: int, reps: int) -> str:
    lines = [
        f"# Delta vs Parquet output, LogReg ({scale}: {rows:,} rows x 20 float64 features, "
        f"{os.cpu_count()} cores, median of {reps}, interleaved)",
        "",
        "| engine | Parquet s | Delta s | Delta / Parquet | Delta commit s | commit share "
        "(median, max) | Parquet commit s | rows | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for engine, e in r["engines"].items():
        lines.append(
            f"| {engine} | {e['parquet_s']:.2f} | {e['delta_s']:.2f} | {e['ratio']:.2f}x | "
            f"{e['delta_commit_s']:.3f} | {e['delta_commit_share_median']:.1%}, "
            f"{e['delta_commit_share_max']:.1%} | {e['parquet_commit_s']:.3f} | "
            f"{e['rows']:,} | {e['max_abs_diff']:.1e} |"
        )
    lines += ["", "target: the Delta commit <= 5% of the job in every run"]
    for engine, e in r["engines"].items():
        lines.append(f"- {engine}: runs {e['runs']}, last Delta version {e['delta_version']}")
    return "\n".join(lines)
