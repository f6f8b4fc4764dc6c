"""Scoring benchmark: ours vs the in-process limit vs mlflow's spark_udf, measured in ONE run.

    make bench               # 2M rows x 20 float64 features
    make bench SCALE=20M     # same, 20M rows (slower; checks that memory stays flat)

For HistGradientBoosting and LogisticRegression (both fit on numpy) it times:
  A             one Python process: pyarrow read -> predict_proba -> pyarrow write, file by file
                (the model uses both cores): the practical limit
  arrow_direct  batch-serving, engine arrow_direct (full job: resolve, score, stage, commit)
  dataframe     batch-serving, engine dataframe (mapInArrow)
  spark_udf     mlflow.pyfunc.spark_udf with an array result, positive class taken by index
                from classes_ (the correct use; result_type="double" would return P(class 0))
Each is the median of --reps runs after a warm-up on a small partition. Every method's scores
are compared with A's (max abs diff). Peak RSS is sampled over the whole process tree
(driver, JVM, Python workers) during each method's runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batch_serving.config import JobConfig
from batch_serving.models import cache as model_cache
from batch_serving.runs.job import run_score
from batch_serving.spark.session import build_session
from batch_serving.tables.manifest import RunManifest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".bench_data"
RESULTS = ROOT / "bench_results"
FEATURES = [f"f{i}" for i in range(20)]
RUN_DATE = dt.date(2026, 1, 1)
WARMUP_DATE = dt.date(2025, 12, 31)
SCALES = {"200k": 200_000, "2M": 2_000_000, "20M": 20_000_000}  # 200k: a smoke run
ROWS_PER_FILE = 250_000
ROW_GROUP = 65_536
HGB_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


# ----------------------------------------------------------------------------- data and models
def make_dataset(root: Path, run_date: dt.date, rows: int) -> Path:
    """``rows`` x 20 float64 features + ``id``, in files of 250k rows (cached)."""
    part = root / f"ds={run_date}"
    done = part / "_COMPLETE"
    if done.exists():
        return part
    part.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    for i, start in enumerate(range(0, rows, ROWS_PER_FILE)):
        n = min(ROWS_PER_FILE, rows - start)
        cols = {"id": np.arange(start, start + n, dtype=np.int64)}
        cols.update({f: rng.standard_normal(n) for f in FEATURES})
        pq.write_table(pa.table(cols), part / f"part-{i:05d}.parquet", row_group_size=ROW_GROUP)
    done.touch()
    return part


def train(kind: str, seed: int = 0, c: float = 1.0) -> Any:
    """HGB or LogReg (inverse regularization ``c``) fit on numpy; ``seed`` draws the data."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((200_000, len(FEATURES)))
    logit = x[:, 0] - 0.5 * x[:, 1] + 0.8 * x[:, 2] * x[:, 3] + 0.3 * np.sin(3 * x[:, 4])
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(int)
    model = (
        HistGradientBoostingClassifier(random_state=0) if kind == "hgb" else LogisticRegression(C=c)
    )
    return model.fit(x, y)


def register_models(tracking_uri: str, artifacts: Path) -> dict[str, Any]:
    """Register each model twice: ``<kind>`` for us, ``<kind>_proba`` for spark_udf."""
    bench_experiment(tracking_uri, artifacts)
    models = {}
    for kind in ("hgb", "logreg"):
        if is_registered(tracking_uri, kind):
            models[kind] = None
            continue
        model = train(kind)
        trusted = HGB_TRUSTED if kind == "hgb" else None
        for name, fn in ((kind, "predict"), (f"{kind}_proba", "predict_proba")):
            register(tracking_uri, model, name, fn, trusted)
        models[kind] = model
    return models


def bench_experiment(tracking_uri: str, artifacts: Path) -> None:
    """The ``bench`` experiment, its artifacts under ``artifacts``, set as the current one."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name("bench") is None:
        mlflow.create_experiment("bench", artifact_location=artifacts.as_uri())
    mlflow.set_experiment("bench")


def is_registered(tracking_uri: str, name: str) -> bool:
    from mlflow import MlflowClient

    try:
        MlflowClient(tracking_uri).get_model_version_by_alias(name, "champion")
    except Exception:
        return False
    return True


def register(tracking_uri: str, model: Any, name: str, fn: str, trusted: list[str] | None) -> None:
    """Log ``model`` (pyfunc predict function ``fn``) as a new version of ``name``@champion."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    sample = pd.DataFrame(np.zeros((5, len(FEATURES))), columns=FEATURES)
    with mlflow.start_run(run_name=name):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=name,
            pyfunc_predict_fn=fn,
            signature=infer_signature(sample),
            skops_trusted_types=trusted,
        )
    MlflowClient(tracking_uri).set_registered_model_alias(
        name, "champion", str(info.registered_model_version)
    )


def load_registered(tracking_uri: str, kind: str) -> Any:
    from batch_serving.config import ModelConfig
    from batch_serving.models.artifacts import fetch_and_load
    from batch_serving.models.registry import resolve_model

    ref = resolve_model(ModelConfig(name=kind, alias="champion", tracking_uri=tracking_uri))
    return fetch_and_load(ref).obj


# ----------------------------------------------------------------------------- methods
def run_in_process(model: Any, part: Path, out: Path) -> np.ndarray:
    """The limit: one process, file by file, the model free to use every core."""
    out.mkdir(parents=True, exist_ok=True)
    chunks = []
    for f in sorted(part.glob("*.parquet")):
        table = pq.read_table(f, columns=["id", *FEATURES])
        x = np.column_stack([table.column(c).to_numpy() for c in FEATURES])
        score = model.predict_proba(x)[:, 1]
        pq.write_table(pa.table({"id": table.column("id"), "score": score}), out / f.name)
        chunks.append(score)
    return np.concatenate(chunks)


def run_ours(spark: Any, cfg: JobConfig, run_date: dt.date) -> RunManifest:
    return run_score(spark, cfg, run_date).manifest


def run_spark_udf(spark: Any, tracking_uri: str, kind: str, part: Path, out: Path) -> None:
    import mlflow
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, DoubleType

    mlflow.set_tracking_uri(tracking_uri)
    uri = f"models:/{kind}_proba@champion"
    classes = list(load_registered(tracking_uri, kind).classes_)
    positive = classes.index(1)  # never "the first column"
    udf = mlflow.pyfunc.spark_udf(
        spark, uri, result_type=ArrayType(DoubleType()), env_manager="local"
    )
    df = spark.read.parquet(str(part))
    scored = df.select("id", udf(*[F.col(c) for c in FEATURES])[positive].alias("score"))
    scored.write.mode("overwrite").parquet(str(out))


def scores_by_id(path: Path, rows: int, column: str = "score") -> np.ndarray:
    """``column`` indexed by id; ``<struct>.<field>`` reads a field of a member's struct."""
    table = pq.read_table(path, columns=["id", column.split(".", 1)[0]]).flatten()
    out = np.full(rows, np.nan)
    out[table.column("id").to_numpy()] = table.column(column).to_numpy()
    return out


# ----------------------------------------------------------------------------- measurement
class PeakRss:
    """Samples the summed RSS of this process and all its descendants (driver, JVM, workers)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(os.getpid()))
            time.sleep(self.interval)


def tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            pages = int(Path(f"/proc/{entry}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        pid = int(entry)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, list[float], int, Any]:
    times, last = [], None
    with PeakRss() as mem:
        for _ in range(reps):
            start = time.perf_counter()
            last = fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times), times, mem.peak, last


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="2M")
    parser.add_argument("--reps", type=int, default=None, help="default: 3 (2M), 1 (20M)")
    parser.add_argument("--skip-spark-udf", action="store_true")
    args = parser.parse_args(argv)
    rows = SCALES[args.scale]
    reps = args.reps or (3 if args.scale == "2M" else 1)

    table_root = DATA / "warehouse" / args.scale
    print(f"preparing {rows:,} rows x {len(FEATURES)} features in {table_root} ...", flush=True)
    part = make_dataset(table_root, RUN_DATE, rows)
    make_dataset(table_root, WARMUP_DATE, 100_000)
    registry = DATA / "registry"
    registry.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{registry / 'mlflow.db'}"
    register_models(tracking_uri, registry / "artifacts")

    spark = build_session(
        JobConfig.model_validate(_job_dict("hgb", tracking_uri, table_root, "dataframe")).spark,
        "batch-serving-bench",
    )
    spark.sparkContext.setLogLevel("ERROR")
    scratch = RESULTS / "scratch" / args.scale
    results: list[dict[str, Any]] = []
    for kind in ("hgb", "logreg"):
        model = load_registered(tracking_uri, kind)
        cfgs = {
            engine: JobConfig.model_validate(
                _job_dict(kind, tracking_uri, table_root, engine, scratch / engine)
            )
            for engine in ("arrow_direct", "dataframe")
        }
        warm = make_dataset(table_root, WARMUP_DATE, 100_000)
        run_in_process(model, warm, scratch / "warm_a")
        cold = {}  # the first job of a model version: every worker must load it exactly once
        for engine, cfg in cfgs.items():
            scoring = run_ours(spark, cfg, WARMUP_DATE).scoring
            cold[engine] = f"{scoring.model_loads}/{scoring.python_workers}"
        if not args.skip_spark_udf:
            run_spark_udf(spark, tracking_uri, kind, warm, scratch / "warm_udf")

        print(f"[{kind}] A (in-process) ...", flush=True)
        a_s, a_all, a_mem, _ = timed(lambda m=model: run_in_process(m, part, scratch / "a"), reps)
        reference = scores_by_id(scratch / "a", rows)
        results.append(_row(kind, "A (in-process)", a_s, a_all, a_s, a_mem, 0.0, None))
        for engine, cfg in cfgs.items():
            print(f"[{kind}] {engine} ...", flush=True)
            s, all_s, mem, manifest = timed(lambda c=cfg: run_ours(spark, c, RUN_DATE), reps)
            got = scores_by_id(Path(manifest.output.path), rows)
            warm_loads = f"{manifest.scoring.model_loads}/{manifest.scoring.python_workers}"
            loads = f"{cold[engine]} cold, {warm_loads} warm"
            results.append(_row(kind, engine, s, all_s, a_s, mem, _diff(got, reference), loads))
        if not args.skip_spark_udf:
            print(f"[{kind}] mlflow spark_udf ...", flush=True)
            out = scratch / "udf"
            s, all_s, mem, _ = timed(
                lambda k=kind, o=out: run_spark_udf(spark, tracking_uri, k, part, o), reps
            )
            results.append(
                _row(
                    kind,
                    "mlflow spark_udf",
                    s,
                    all_s,
                    a_s,
                    mem,
                    _diff(scores_by_id(out, rows), reference),
                    None,
                )
            )
        model_cache.clear()  # the in-process A path's cache (workers keep their own)

    report = render(results, args.scale, rows, reps)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scoring-{args.scale}.md").write_text(report + "\n")
    (RESULTS / f"scoring-{args.scale}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {RESULTS / f'scoring-{args.scale}.md'}")
    return 0


def _job_dict(
    kind: str, tracking_uri: str, table_root: Path, engine: str, out: Path | None = None
) -> dict[str, Any]:
    return {
        "job": f"bench_{kind}",
        "model": {"name": kind, "alias": "champion", "tracking_uri": tracking_uri},
        "input": {"path": str(table_root)},
        "entity_columns": ["id"],
        "output": {"root": str(out or RESULTS / "scratch")},
        "engine": engine,
        "loading": {"strategy": "broadcast"},
        "spark": {"master": "local[2]", "conf": {"spark.driver.memory": "4g"}},
    }


def _diff(got: np.ndarray, reference: np.ndarray) -> float:
    if np.isnan(got).any():
        return float("nan")  # a missing row is a failure, not a small difference
    return float(np.max(np.abs(got - reference)))


def _row(
    kind: str,
    method: str,
    s: float,
    all_s: list[float],
    a_s: float,
    mem: int,
    diff: float,
    loads: str | None,
) -> dict[str, Any]:
    return {
        "model": kind,
        "method": method,
        "seconds": round(s, 3),
        "runs": [round(t, 3) for t in all_s],
        "ratio_vs_A": round(s / a_s, 3),
        "max_abs_diff_vs_A": diff,
        "peak_rss_mb": round(mem / 1e6),
        "model_loads_per_workers": loads,
    }


def render(results: list[dict[str, Any]], scale: str, rows: int, reps: int) -> str:
    lines = [
        f"# batch-serving scoring benchmark ({scale}: {rows:,} rows x {len(FEATURES)} float64 "
        f"features, {os.cpu_count()} cores, median of {reps} after warm-up)",
        "",
        "| model | method | seconds | x A | max abs diff vs A | peak RSS MB "
        "| model loads/workers |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['seconds']:.2f} | {r['ratio_vs_A']:.2f} | "
            f"{r['max_abs_diff_vs_A']:.1e} | {r['peak_rss_mb']} | "
            f"{r['model_loads_per_workers'] or ''} |"
        )
    lines += [
        "",
        "Peak RSS: whole process tree (driver + JVM + Python workers), so the JVM is included "
        "even for A. Model loads: first job of a model version (cold) and the timed jobs (warm: "
        "workers reuse the cached model).",
        "",
        "targets:",
    ]
    by = {(r["model"], r["method"]): r for r in results}
    for kind, limit in (("hgb", 1.10), ("logreg", 1.35)):
        r = by.get((kind, "arrow_direct"))
        if r:
            ok = "PASS" if r["ratio_vs_A"] <= limit else "MISS"
            lines.append(
                f"  {ok} {kind}: arrow_direct {r['ratio_vs_A']:.2f}x A (target <= {limit}x)"
            )
        df, udf = by.get((kind, "dataframe")), by.get((kind, "mlflow spark_udf"))
        if df and udf:
            speedup = udf["seconds"] / df["seconds"]
            ok = "PASS" if speedup >= 1.6 else "MISS"
            lines.append(
                f"  {ok} {kind}: dataframe {speedup:.2f}x faster than spark_udf (target >= 1.6x)"
            )
    worst = max(
        (r["max_abs_diff_vs_A"] for r in results if r["method"] in ("arrow_direct", "dataframe")),
        default=0.0,
    )
    lines.append(
        f"  {'PASS' if worst <= 1e-12 else 'MISS'} scores: max abs diff vs A {worst:.1e} "
        "(target <= 1e-12)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
