"""Scoring benchmark: ours vs the in-process limit vs mlflow's spark_udf, measured in ONE run.

    make bench               # 2M rows x 20 float64 features, both parts below
    make bench SCALE=20M     # same, 20M rows (slower; checks that memory stays flat)
    make bench SCALE=200k ONLY=multi   # a smoke run of one part (ONLY=single|multi|drift)
    make bench SCALE=200k ONLY=whole   # the demo job as a process (bench/whole_part.py)
    make bench SCALE=2M ONLY=connect   # the demo job as a Connect client (bench/connect_part.py)
    make bench SCALE=200k ONLY=cascade # LogReg -> HGB cascade vs HGB alone (cascade_part.py)
    make bench SCALE=2M ONLY=delta     # Delta vs Parquet output, the Delta commit's share

Part "single": for HistGradientBoosting and LogisticRegression (both fit on numpy) it times:
  A             one Python process: pyarrow read -> predict_proba -> pyarrow write, file by file
                (the model uses both cores): the practical limit
  arrow_direct  batch-serving, engine arrow_direct (full job: resolve, score, stage, commit)
  dataframe     batch-serving, engine dataframe (mapInArrow)
  spark_udf     mlflow.pyfunc.spark_udf with an array result, positive class taken by index
                from classes_ (the correct use; result_type="double" would return P(class 0))
Each is the median of --reps runs after a warm-up on a small partition. Every method's scores
are compared with A's (max abs diff). Peak RSS is sampled over the whole process tree
(driver, JVM, Python workers) during each method's runs.

Part "drift" (issue #13): the same arrow_direct job with monitoring off and on (every feature
and the score binned in the scoring pass, drift vs the previous date, report written), HGB
and LogReg, interleaved rounds in one session: the on/off wall-time ratio (target <= 1.10x).

Part "gates" (issue #13): the demo-like input + output GX gates on a 200k-row partition (HGB,
arrow_direct): their steps' share of run_score's wall time (target <= 10%), the same job
without gates (A/B), and GX's own validation of the same expectations for reference.

Part "multi" (issue #11): 4 different LogisticRegressions, each registered under its own name:
  A4  one Python process reads each file once with pyarrow, calls the 4 models' predict_proba,
      writes once (id + 4 score columns), file by file: the limit for the same work
  M1  ONE run_score (arrow_direct): champion + members m2, m3, m4
  M4  4 single-model run_score calls (same session, same engine), total time
Same session, warm-up on the small partition, then --reps rounds of A4, M1, M4 interleaved
(median). Every member's score (M1 structs and served score, M4 outputs) is compared with that
model alone in-process; the run steps' durations show where M1's and M4's time goes.

Part "s3" (issue #12, opt-in: ``--only s3``): the same arrow_direct LogReg job with input and
output on an S3-protocol server on loopback (moto_server, started and stopped here) vs on
local disk, interleaved rounds; the ratio is the cost of the object-store I/O + the pointer
commit protocol (moto keeps objects in its own Python process: a pessimistic S3).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batch_serving.config import ExpectationConfig, JobConfig
from batch_serving.models import cache as model_cache
from batch_serving.runs.job import RunResult, run_score
from batch_serving.spark.engines.arrow_direct import dictionary_columns
from batch_serving.spark.session import build_session
from batch_serving.tables.manifest import RunManifest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".bench_data"
RESULTS = ROOT / "bench_results"
FEATURES = [f"f{i}" for i in range(20)]
RUN_DATE = dt.date(2026, 1, 1)
WARMUP_DATE = dt.date(2025, 12, 31)
SCALES = {"200k": 200_000, "2M": 2_000_000, "20M": 20_000_000}  # 200k: a smoke run
PARTS = ("single", "multi", "drift", "gates", "s3")  # "s3" only runs when asked for (--only s3)
OPT_IN = ("onnx", "whole", "connect", "cascade", "delta")  # onnx: arrow_direct with the ONNX export
# cascade: LogReg then HGB for the open rows vs HGB alone; embedded decided-row latency
# whole: the demo job as a process vs a plain script, and a backfill (bench/whole_part.py)
GATE_ROWS = 200_000  # the gates part always measures a 200k-row partition (issue #13 target)
GATE_ROUNDS = 7  # ~1 s runs: more rounds than the other parts for a stable A/B median
DRIFT_ROUNDS = 9  # LogReg runs take ~0.4 s at 2M: a few percent is within one run's noise
MULTI_ROUNDS = 5  # M1 and A4 take < 1 s at 2M: 3 rounds left the ratio +-0.15 run to run
INPUT_GATE = [  # like the demo job's input gate, on the bench columns
    {"type": "not_null", "column": "id"},
    {"type": "between", "column": "f0", "min": -10, "max": 10},
    {"type": "null_fraction", "column": "f1", "max_fraction": 0.01},
    {"expectation": "ExpectColumnMeanToBeBetween", "column": "f2", "min_value": -1, "max_value": 1},
    {"type": "row_count_change", "max_change_pct": 50},
]
OUTPUT_GATE = [
    {"type": "not_null", "column": "score"},
    {"type": "between", "column": "score", "min": 0, "max": 1},
]
ROWS_PER_FILE = 250_000
ROW_GROUP = 65_536
# multi-model part: member key -> (registered name, training data seed, C): 4 different LogRegs
MEMBERS = {
    "champion": ("logreg_m1", 1, 1.0),
    "m2": ("logreg_m2", 2, 0.1),
    "m3": ("logreg_m3", 3, 0.01),
    "m4": ("logreg_m4", 4, 10.0),
}
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


def register_models(tracking_uri: str) -> dict[str, Any]:
    """Register each model twice: ``<kind>`` for us, ``<kind>_proba`` for spark_udf."""
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


def register_members(tracking_uri: str) -> None:
    """The multi-model part's 4 LogRegs (fit on numpy), each under its own registered name."""
    for name, seed, c in MEMBERS.values():
        if not is_registered(tracking_uri, name):
            register(tracking_uri, train("logreg", seed, c), name, "predict", None)


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
        scored = pa.table({"id": table.column("id"), "score": score})
        pq.write_table(scored, out / f.name, use_dictionary=dictionary_columns(scored.schema))
        chunks.append(score)
    return np.concatenate(chunks)


def run_in_process_many(models: dict[str, Any], part: Path, out: Path) -> None:
    """A4, the limit for several models: each file read once, every model's predict_proba,
    one write (id + one score column per model key)."""
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(part.glob("*.parquet")):
        table = pq.read_table(f, columns=["id", *FEATURES])
        x = np.column_stack([table.column(c).to_numpy() for c in FEATURES])
        scores = {key: model.predict_proba(x)[:, 1] for key, model in models.items()}
        scored = pa.table({"id": table.column("id"), **scores})
        pq.write_table(scored, out / f.name, use_dictionary=dictionary_columns(scored.schema))


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


def timed_rounds(
    methods: dict[str, Callable[[], Any]], reps: int
) -> dict[str, tuple[list[float], list[Any]]]:
    """Every method once per round, ``reps`` rounds: on a shared machine a slow spell then
    slows every method, not only the one measured at that moment. Every other round runs the
    methods in reverse order (no method always follows the same one), and each run starts
    after a full garbage collection (no method pays for another's garbage). Times, results."""
    out: dict[str, tuple[list[float], list[Any]]] = {name: ([], []) for name in methods}
    for round_ in range(reps):
        order = list(methods.items())
        for name, fn in order if round_ % 2 == 0 else reversed(order):
            print(f"[bench] {name} round {round_ + 1}/{reps} ...", flush=True)
            gc.collect()
            start = time.perf_counter()
            result = fn()
            out[name][0].append(time.perf_counter() - start)
            out[name][1].append(result)
    return out


@dataclass(frozen=True)
class Bench:
    """What every measured method shares: the session, the registry, the input partitions."""

    spark: Any
    tracking_uri: str
    table_root: Path
    part: Path  # the measured partition (RUN_DATE)
    warm: Path  # the small warm-up partition (WARMUP_DATE)
    scratch: Path


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=list(SCALES), default="2M")
    parser.add_argument("--reps", type=int, default=None, help="default: 3 (20M: 1)")
    parser.add_argument("--skip-spark-udf", action="store_true")
    parser.add_argument(
        "--only",
        choices=[*PARTS, *OPT_IN],
        default=None,
        help="single: one model per job (A, arrow_direct, dataframe, spark_udf); "
        "multi: 4 models in one pass (A4, M1, M4); drift: monitoring on vs off (HGB and "
        "LogReg); gates: GX gates' share of a 200k-row job; s3: arrow_direct on an S3 server "
        "vs local disk; onnx: the ONNX export of each model vs the model itself, same engine; "
        "whole: the demo job as a whole process vs a plain script, and a 10-date backfill vs "
        "10 runs; connect: the demo job as a Spark Connect client vs classic; cascade: LogReg "
        "then HGB for the ~20%% open rows vs HGB alone, and the embedded cascade's single-row "
        "latency; delta: Delta vs Parquet output, both engines, and the Delta commit's share. "
        "Default: all but s3, onnx, whole, connect, cascade and delta",
    )
    args = parser.parse_args(argv)
    rows = SCALES[args.scale]
    reps = args.reps or (1 if args.scale == "20M" else 3)
    parts = [args.only] if args.only else [p for p in PARTS if p != "s3"]
    if parts == ["whole"]:  # processes of their own: no session, data or models here
        from whole_part import run_whole

        RESULTS.mkdir(exist_ok=True)
        whole_md, whole = run_whole(args.scale, rows, max(reps, 3), DATA)
        _write_report("whole", args.scale, whole_md, whole)
        return 0
    if parts == ["connect"]:  # a Connect server and client processes: nothing here either
        from connect_part import run_connect

        RESULTS.mkdir(exist_ok=True)
        connect_md, connect = run_connect(args.scale, rows, max(reps, 3), DATA)
        _write_report("connect", args.scale, connect_md, connect)
        return 0

    table_root = DATA / "warehouse" / args.scale
    print(f"preparing {rows:,} rows x {len(FEATURES)} features in {table_root} ...", flush=True)
    part = make_dataset(table_root, RUN_DATE, rows)
    warm = make_dataset(table_root, WARMUP_DATE, 100_000)
    registry = DATA / "registry"
    registry.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{registry / 'mlflow.db'}"
    bench_experiment(tracking_uri, registry / "artifacts")
    if {"single", "drift", "gates", "s3", "onnx", "cascade", "delta"} & set(parts):
        register_models(tracking_uri)
    if "multi" in parts:
        register_members(tracking_uri)

    spark = build_session(
        JobConfig.model_validate(_job_dict("hgb", tracking_uri, table_root, "dataframe")).spark,
        "batch-serving-bench",
    )
    spark.sparkContext.setLogLevel("ERROR")
    bench = Bench(spark, tracking_uri, table_root, part, warm, RESULTS / "scratch" / args.scale)
    RESULTS.mkdir(exist_ok=True)
    if "single" in parts:
        results = measure_single(bench, rows, reps, args.skip_spark_udf)
        report = render(results, args.scale, rows, reps)
        _write_report("scoring", args.scale, report, results)
    if "onnx" in parts:
        from onnx_part import measure_onnx, render_onnx

        onnx_results = measure_onnx(bench, rows, reps, _job_dict, scores_by_id, WARMUP_DATE)
        _write_report(
            "onnx", args.scale, render_onnx(onnx_results, args.scale, rows, reps), onnx_results
        )
    if "cascade" in parts:
        from cascade_part import measure_cascade, render_cascade

        cascade = measure_cascade(
            bench, rows, reps, _job_dict, load_registered, FEATURES, WARMUP_DATE
        )
        cascade_md = render_cascade(cascade, args.scale, rows, reps)
        _write_report("cascade", args.scale, cascade_md, cascade)
    if "delta" in parts:
        from delta_part import measure_delta, render_delta

        delta = measure_delta(bench, rows, reps, _job_dict, WARMUP_DATE)
        _write_report("delta", args.scale, render_delta(delta, args.scale, rows, reps), delta)
    if "multi" in parts:
        multi_reps = reps if args.scale == "20M" else max(reps, MULTI_ROUNDS)
        multi = measure_multi(bench, rows, multi_reps)
        report = render_multi(multi, args.scale, rows, multi_reps)
        _write_report("multi", args.scale, report, multi)
    if "drift" in parts:
        drift = measure_drift(bench, reps)
        drift_md = render_drift(drift, args.scale, rows, max(reps, DRIFT_ROUNDS))
        _write_report("drift", args.scale, drift_md, drift)
    if "gates" in parts:
        gates = measure_gates(bench, reps)
        _write_report("gates", "200k", render_gates(gates, max(reps, GATE_ROUNDS)), gates)
    if "s3" in parts:
        s3 = measure_s3(bench, rows, reps)
        _write_report("s3", args.scale, render_s3(s3, args.scale, rows, reps), s3)
    return 0


def measure_s3(bench: Bench, rows: int, reps: int) -> dict[str, Any]:
    """arrow_direct (LogReg) with input + output on moto_server vs on local disk."""
    import pyarrow.fs as pafs

    sys.path.insert(0, str(ROOT / "tests"))
    from live import S3Server  # the tests' helper (own process group)

    from batch_serving.notebook import read_predictions

    server = S3Server()
    try:
        off = {"catalog": {"enabled": False}, "tracking": {"log_runs": False}}
        local_dict = _job_dict(
            "logreg",
            bench.tracking_uri,
            bench.table_root,
            "arrow_direct",
            bench.scratch / "s3-local",
        )
        local = JobConfig.model_validate({**local_dict, **off})
        remote_dict = _job_dict("logreg", bench.tracking_uri, bench.table_root, "arrow_direct")
        remote_dict["input"] = {"path": "s3://bench/warehouse"}
        remote_dict["output"] = {"root": "s3://bench/out"}
        remote_dict["storage"] = {**server.storage, "lease_dir": str(bench.scratch / "leases")}
        # same post-commit work on both sides: none (SQL tables on S3 need Spark's s3a jars)
        remote = JobConfig.model_validate({**remote_dict, **off})
        fs = pafs.S3FileSystem(
            endpoint_override=server.endpoint,
            scheme="http",
            access_key="testing",
            secret_key="testing",
            allow_bucket_creation=True,
        )
        fs.create_dir("bench")
        print("[s3] uploading the input to moto_server ...", flush=True)
        for day in (WARMUP_DATE, RUN_DATE):
            name = f"ds={day.isoformat()}"
            pafs.copy_files(
                str(bench.table_root / name),
                f"bench/warehouse/{name}",
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=fs,
            )
        for cfg in (local, remote):
            run_ours(bench.spark, cfg, WARMUP_DATE)
        rounds = timed_rounds(
            {
                "local disk": lambda: run_ours(bench.spark, local, RUN_DATE),
                "S3 (moto)": lambda: run_ours(bench.spark, remote, RUN_DATE),
            },
            reps,
        )
        got = {
            name: read_predictions(cfg, RUN_DATE, columns=["id", "score"]).sort_by("id")
            for name, cfg in (("local disk", local), ("S3 (moto)", remote))
        }
        diff = float(
            np.max(
                np.abs(
                    got["S3 (moto)"].column("score").to_numpy()
                    - got["local disk"].column("score").to_numpy()
                )
            )
        )
    finally:
        server.stop()
    medians = {name: statistics.median(times) for name, (times, _) in rounds.items()}
    steps = {  # run_ours returns the manifest: its step durations (commit excluded)
        name: {
            step: round(statistics.median(m.durations_s.get(step, 0.0) for m in manifests), 3)
            for step in manifests[-1].durations_s
        }
        for name, (_, manifests) in rounds.items()
    }
    return {
        "seconds": medians,
        "all": {k: v[0] for k, v in rounds.items()},
        "max_abs_diff": diff,
        "steps": steps,
    }


def render_s3(results: dict[str, Any], scale: str, rows: int, reps: int) -> str:
    local, s3 = results["seconds"]["local disk"], results["seconds"]["S3 (moto)"]
    lines = [
        f"# arrow_direct on S3 (moto_server, loopback) vs local disk ({scale}: {rows:,} rows, "
        f"LogReg, {os.cpu_count()} cores, median of {reps} interleaved rounds)",
        "",
        "| storage | seconds | x local | steps (median s) |",
        "|---|---:|---:|---|",
    ]
    for name, sec in results["seconds"].items():
        steps = ", ".join(f"{k} {v:.2f}" for k, v in results["steps"][name].items())
        lines.append(f"| {name} | {sec:.2f} | {sec / local:.2f} | {steps} |")
    lines += [
        "",
        f"S3 / local: {s3 / local:.2f}x; max abs score diff {results['max_abs_diff']:.1e}",
    ]
    return "\n".join(lines)


def measure_single(
    bench: Bench, rows: int, reps: int, skip_spark_udf: bool
) -> list[dict[str, Any]]:
    """One model per job: A vs arrow_direct vs dataframe vs mlflow spark_udf, HGB and LogReg."""
    spark, tracking_uri, part, scratch = bench.spark, bench.tracking_uri, bench.part, bench.scratch
    results: list[dict[str, Any]] = []
    for kind in ("hgb", "logreg"):
        model = load_registered(tracking_uri, kind)
        cfgs = {
            engine: JobConfig.model_validate(
                _job_dict(kind, tracking_uri, bench.table_root, engine, scratch / engine)
            )
            for engine in ("arrow_direct", "dataframe")
        }
        run_in_process(model, bench.warm, scratch / "warm_a")
        cold = {}  # the first job of a model version: every worker must load it exactly once
        for engine, cfg in cfgs.items():
            scoring = run_ours(spark, cfg, WARMUP_DATE).scoring
            cold[engine] = f"{scoring.model_loads}/{scoring.python_workers}"
        if not skip_spark_udf:
            run_spark_udf(spark, tracking_uri, kind, bench.warm, scratch / "warm_udf")

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
        if not skip_spark_udf:
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
    return results


# ----------------------------------------------------------------------------- drift (#13)
def measure_drift(bench: Bench, reps: int) -> list[dict[str, Any]]:
    """The same arrow_direct job with monitoring off and on (every feature and the score
    profiled in the scoring pass, drift vs the previous date, report written), per model;
    interleaved rounds, medians. Everything else at its defaults, as users run a job: the
    SQL catalog and the MLflow record (where monitoring also logs its profile, report and
    drift metrics). The warm-up date's run is the "on" job's reference."""
    results = []
    for kind in ("hgb", "logreg"):
        cfgs = {}
        for mode in ("off", "on"):
            raw = _job_dict(
                kind, bench.tracking_uri, bench.table_root, "arrow_direct", bench.scratch / mode
            )
            raw["job"] = f"bench_drift_{mode}_{kind}"  # its own MLflow experiment
            raw["catalog"] = {  # its own tables: neither job re-points the other's
                "predictions_database": f"bench_drift_{mode}",
                "quarantine_database": f"bench_drift_{mode}_quarantine",
            }
            if mode == "on":
                raw["monitoring"] = {"enabled": True, "reference": "previous"}
            cfgs[mode] = JobConfig.model_validate(raw)
            run_score(bench.spark, cfgs[mode], WARMUP_DATE)
        rounds = timed_rounds(
            {m: (lambda c=c: run_score(bench.spark, c, RUN_DATE)) for m, c in cfgs.items()},
            max(reps, DRIFT_ROUNDS),
        )
        walls = {m: statistics.median(rounds[m][0]) for m in cfgs}
        paired = [on / off for on, off in zip(rounds["on"][0], rounds["off"][0], strict=True)]
        stages = {
            m: statistics.median(r.manifest.durations_s["score_and_stage"] for r in rounds[m][1])
            for m in cfgs
        }
        steps = {m: _step_medians(rounds[m][0], [[r] for r in rounds[m][1]]) for m in cfgs}
        last: RunResult = rounds["on"][1][-1]
        columns = last.manifest.drift["columns"]
        results.append(
            {
                "model": kind,
                "wall_off_s": walls["off"],
                "wall_on_s": walls["on"],
                "wall_ratio": walls["on"] / walls["off"],
                "paired_ratio": statistics.median(paired),
                "paired_ratios": [round(r, 3) for r in paired],
                "stage_off_s": stages["off"],
                "stage_on_s": stages["on"],
                "stage_ratio": stages["on"] / stages["off"],
                "steps_off": steps["off"],
                "steps_on": steps["on"],
                "columns": len(last.manifest.drift["profiled"]),
                "score_psi": columns["score"]["psi"],
                "report_kb": (last.report.stat().st_size / 1024) if last.report else None,
            }
        )
    return results


def render_drift(results: list[dict[str, Any]], scale: str, rows: int, reps: int) -> str:
    lines = [
        f"## Drift on vs off ({scale}: {rows:,} rows x {len(FEATURES)} features, median of "
        f"{reps}, arrow_direct, same session, interleaved; SQL catalog and MLflow record on, "
        "as by default)",
        "",
        "| model | off (s) | on (s) | on/off wall | paired on/off | score_and_stage off/on (s) "
        "| stage ratio | columns profiled | score PSI | report KB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['wall_off_s']:.2f} | {r['wall_on_s']:.2f} | "
            f"{r['wall_ratio']:.3f}x | {r['paired_ratio']:.3f}x | "
            f"{r['stage_off_s']:.2f} / {r['stage_on_s']:.2f} | "
            f"{r['stage_ratio']:.3f}x | {r['columns']} | {r['score_psi']:.5f} | "
            f"{r['report_kb']:.0f} |"
        )
    lines += [
        "",
        "on/off wall: ratio of the medians; paired: median of the per-round ratios (rounds "
        "alternate which mode runs first). Per-round ratios: "
        + "; ".join(f"{r['model']} {r['paired_ratios']}" for r in results),
        "",
    ]
    for r in results:
        added = {
            n: r["steps_on"].get(n, 0.0) - r["steps_off"].get(n, 0.0)
            for n in r["steps_on"]
            if n != "wall"
        }
        shown = ", ".join(f"{n} {v:+.3f}" for n, v in added.items() if abs(v) >= 0.002)
        lines.append(f"{r['model']}: what drift on adds, median seconds per step: {shown}")
    lines.append("")
    worst = max(max(r["wall_ratio"], r["paired_ratio"]) for r in results)
    lines.append(
        f"  {'PASS' if worst <= 1.10 else 'OVER'} drift on/off wall: worst {worst:.3f}x "
        "(target <= 1.10x; the worse of the two measures)"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- gates
def measure_gates(bench: Bench, reps: int) -> dict[str, Any]:
    """Gates on vs off on a 200k-row partition, ``reps`` interleaved rounds (median)."""
    from batch_serving.quality.gates import to_gx, validate_with_gx

    root = DATA / "warehouse" / "gates"
    make_dataset(root, RUN_DATE, GATE_ROWS)
    make_dataset(root, WARMUP_DATE, GATE_ROWS)  # the "previous run" of row_count_change

    def job(tag: str, validation: dict[str, Any]) -> JobConfig:
        raw = _job_dict("hgb", bench.tracking_uri, root, "arrow_direct", bench.scratch / tag)
        raw["validation"] = validation
        return JobConfig.model_validate(raw)

    gated = job("gates_on", {"input_expectations": INPUT_GATE, "output_expectations": OUTPUT_GATE})
    plain = job("gates_off", {})
    for cfg in (gated, plain):  # warm-up, and the previous committed run for row_count_change
        run_score(bench.spark, cfg, WARMUP_DATE)
    rounds = timed_rounds(
        {
            "gates on": lambda: run_score(bench.spark, gated, RUN_DATE),
            "gates off": lambda: run_score(bench.spark, plain, RUN_DATE),
        },
        max(reps, GATE_ROUNDS),
    )
    walls, results = rounds["gates on"]
    gate_s = [
        r.after.durations_s.get("gate_input", 0.0) + r.after.durations_s.get("gate_output", 0.0)
        for r in results
    ]
    shares = [g / w for g, w in zip(gate_s, walls, strict=True)]
    # reference: GX's own validation of the same expectations (its Spark jobs per expectation)
    frame_in = bench.spark.read.parquet(str(root / f"ds={RUN_DATE}"))
    frame_out = bench.spark.read.parquet(results[-1].manifest.output.path)
    own = []
    for _ in range(reps):
        start = time.perf_counter()
        for frame, specs in ((frame_in, INPUT_GATE), (frame_out, OUTPUT_GATE)):
            objects = [to_gx(ExpectationConfig.model_validate(e), GATE_ROWS) for e in specs]
            validate_with_gx(frame, "bench", objects)
        own.append(time.perf_counter() - start)
    walls_off = rounds["gates off"][0]
    # the gates' cost includes what the scoring tasks count for them (inside score_and_stage):
    # the honest share is the A/B difference of whole runs, paired round by round
    added = [(on - off) / on for on, off in zip(walls, walls_off, strict=True)]
    return {
        "rows": GATE_ROWS,
        "share_ab": (statistics.median(walls) - statistics.median(walls_off))
        / statistics.median(walls),
        "share_ab_rounds": added,
        "wall_on_s": statistics.median(walls),
        "wall_off_s": statistics.median(rounds["gates off"][0]),
        "gates_s": statistics.median(gate_s),
        "share": statistics.median(shares),
        "gx_own_s": statistics.median(own),
        "all_walls_on": walls,
        "all_walls_off": rounds["gates off"][0],
        "all_gates_s": gate_s,
    }


def render_gates(g: dict[str, Any], reps: int) -> str:
    extra = g["wall_on_s"] - g["wall_off_s"]
    share = max(g["share"], g["share_ab"])  # whichever is worse
    verdict = "PASS" if share <= 0.10 else "FAIL"
    rounds = ", ".join(f"{x:+.1%}" for x in g["share_ab_rounds"])
    return "\n".join(
        [
            f"## GX gates at {g['rows']:,} rows (HGB, arrow_direct, median of {reps}; "
            "shared machine, noisy)",
            f"  {verdict} gates' share of job wall time: {share:.1%} (target <= 10%; the worse "
            "of the two measures below)",
            f"  A/B: job with gates {g['wall_on_s']:.2f} s, same job without "
            f"{g['wall_off_s']:.2f} s: difference {extra:+.2f} s, {g['share_ab']:+.1%} of the "
            "gated run (rounds: "
            f"{rounds}); this includes the metrics the scoring tasks count for the gates",
            f"  steps: gate_input + gate_output {g['gates_s']:.2f} s of run_score "
            f"{g['wall_on_s']:.2f} s = {g['share']:.1%} (planning, GX's evaluation, reports)",
            f"  reference: GX's own validation of the same 7 expectations {g['gx_own_s']:.2f} s",
        ]
    )


# ----------------------------------------------------------------------------- several models
def multi_configs(bench: Bench) -> tuple[JobConfig, dict[str, JobConfig]]:
    """M1: the 4 models as champion + members of ONE job; M4: one single-model job per model.
    Separate output roots and SQL databases, so neither re-points the other's tables."""

    def job(name: str, tag: str, members: dict[str, Any] | None = None) -> JobConfig:
        out = bench.scratch / tag
        raw = _job_dict(name, bench.tracking_uri, bench.table_root, "arrow_direct", out)
        raw["catalog"] = {
            "predictions_database": f"bench_{tag}",
            "quarantine_database": f"bench_{tag}_quarantine",
        }
        if members:
            raw["job"], raw["members"] = "bench_multi", members
        return JobConfig.model_validate(raw)

    members = {k: {"name": n, "alias": "champion"} for k, (n, _, _) in MEMBERS.items()}
    champion = members.pop("champion")["name"]
    return job(champion, "m1", members), {k: job(n, "m4") for k, (n, _, _) in MEMBERS.items()}


def measure_multi(bench: Bench, rows: int, reps: int) -> dict[str, Any]:
    """A4 vs M1 (4 members in one run_score) vs M4 (4 single-model run_score calls)."""
    spark, scratch = bench.spark, bench.scratch
    models = {key: load_registered(bench.tracking_uri, name) for key, (name, *_) in MEMBERS.items()}
    m1_cfg, m4_cfgs = multi_configs(bench)

    def m1(run_date: dt.date) -> RunResult:
        return run_score(spark, m1_cfg, run_date)

    def m4(run_date: dt.date) -> list[RunResult]:
        return [run_score(spark, cfg, run_date) for cfg in m4_cfgs.values()]

    print("[multi] warm-up and references ...", flush=True)
    run_in_process_many(models, bench.warm, scratch / "warm_a4")
    warm_loads = {"M1": _member_loads([m1(WARMUP_DATE)]), "M4": _member_loads(m4(WARMUP_DATE))}
    reference = {}  # each model alone, in-process: what every member's score must equal
    for key, model in models.items():
        run_in_process(model, bench.part, scratch / "alone" / key)
        reference[key] = scores_by_id(scratch / "alone" / key, rows)

    timing = timed_rounds(
        {
            "A4": lambda: run_in_process_many(models, bench.part, scratch / "a4"),
            "M1": lambda: m1(RUN_DATE),
            "M4": lambda: m4(RUN_DATE),
        },
        reps,
    )
    m1_last: RunResult = timing["M1"][1][-1]
    m4_last: list[RunResult] = timing["M4"][1][-1]
    m1_out = Path(m1_last.manifest.output.path)
    diffs = {
        "A4": {k: _diff(scores_by_id(scratch / "a4", rows, k), reference[k]) for k in MEMBERS},
        "M1": {k: _diff(scores_by_id(m1_out, rows, f"{k}.score"), reference[k]) for k in MEMBERS},
        "M4": {
            k: _diff(scores_by_id(Path(r.manifest.output.path), rows), reference[k])
            for k, r in zip(MEMBERS, m4_last, strict=True)
        },
    }
    diffs["M1"]["score (served, top level)"] = _diff(
        scores_by_id(m1_out, rows), reference["champion"]
    )
    timed_loads = {"M1": _member_loads([m1_last]), "M4": _member_loads(m4_last)}
    a4_s = statistics.median(timing["A4"][0])
    methods = []
    for name, label in MULTI_METHODS.items():
        times = timing[name][0]
        loads = f"warm-up {warm_loads[name]}, timed {timed_loads[name]}" if name != "A4" else ""
        methods.append(
            {
                "method": name,
                "label": label,
                "seconds": round(statistics.median(times), 3),
                "runs": [round(t, 3) for t in times],
                "ratio_vs_A4": round(statistics.median(times) / a4_s, 3),
                "model_loads_per_workers": loads,
                "max_abs_diff_vs_alone": _worst(diffs[name].values()),
            }
        )
    steps = {
        "M1": _step_medians(timing["M1"][0], [[r] for r in timing["M1"][1]]),
        "M4": _step_medians(timing["M4"][0], timing["M4"][1]),
    }
    return {"methods": methods, "diffs": diffs, "steps": steps}


MULTI_METHODS = {
    "A4": "A4: in-process, each file read once, 4 x predict_proba, written once",
    "M1": "M1: one run_score, champion + 3 members (arrow_direct)",
    "M4": "M4: 4 single-model run_score calls (arrow_direct), total",
}
# sql_catalog and mlflow_record are timed steps of their own (in _after_commit.json)
OTHER_STEPS = "other: lease, recovery, dead staging cleanup, _after_commit.json"


def _member_loads(results: list[RunResult]) -> str:
    """Model loads / Python workers per model: every member of a run, or each single run."""
    pairs = []
    for result in results:
        m = result.manifest
        sections = m.members or [m.scoring]
        pairs += [(s.model_loads, s.python_workers) for s in sections]
    if len(set(pairs)) == 1:
        return f"{len(pairs)} x {pairs[0][0]}/{pairs[0][1]}"
    return ", ".join(f"{loads}/{workers}" for loads, workers in pairs)


def _step_medians(walls: list[float], rounds: list[list[RunResult]]) -> dict[str, float]:
    """Median seconds per run step (each round's runs summed), the untimed rest, the wall."""
    per_round: list[dict[str, float]] = []
    for wall, results in zip(walls, rounds, strict=True):
        steps: dict[str, float] = {}
        for result in results:
            for name, seconds in result.after.durations_s.items():
                steps[name] = steps.get(name, 0.0) + seconds
        steps[OTHER_STEPS] = wall - sum(steps.values())
        steps["wall"] = wall
        per_round.append(steps)
    names = list(dict.fromkeys(n for steps in per_round for n in steps))
    return {n: round(statistics.median(s.get(n, 0.0) for s in per_round), 3) for n in names}


def _worst(diffs: Any) -> float:
    values = list(diffs)
    return float("nan") if any(np.isnan(values)) else max(values)


def render_multi(results: dict[str, Any], scale: str, rows: int, reps: int) -> str:
    lines = [
        f"# Several models in one pass ({scale}: {rows:,} rows x {len(FEATURES)} float64 "
        f"features, {len(MEMBERS)} LogisticRegression models, {os.cpu_count()} cores, median "
        f"of {reps} interleaved rounds after warm-up)",
        "",
        "| method | seconds | x A4 | model loads/workers | max abs diff vs each model alone |",
        "|---|---:|---:|---|---:|",
    ]
    for r in results["methods"]:
        lines.append(
            f"| {r['label']} | {r['seconds']:.2f} | {r['ratio_vs_A4']:.2f} | "
            f"{r['model_loads_per_workers']} | {r['max_abs_diff_vs_alone']:.1e} |"
        )
    lines += [
        "",
        "Each model alone: that model's predict_proba in-process on the same files. Model "
        "loads/workers per model; M4's warm-up follows M1's, so its workers already hold the "
        "models.",
        "",
        "max abs diff per member: "
        + "; ".join(
            f"{name} " + ", ".join(f"{k} {v:.1e}" for k, v in per.items())
            for name, per in results["diffs"].items()
        ),
        "",
        "Where the time goes (median seconds per step of run_score; M4: its 4 runs summed):",
        "",
        "| step | M1 | M4 |",
        "|---|---:|---:|",
    ]
    m1, m4 = results["steps"]["M1"], results["steps"]["M4"]
    for name in dict.fromkeys([*m1, *m4]):
        lines.append(f"| {name} | {m1.get(name, 0.0):.2f} | {m4.get(name, 0.0):.2f} |")
    by = {r["method"]: r for r in results["methods"]}
    speedup = by["M4"]["seconds"] / by["M1"]["seconds"]
    overhead = by["M1"]["ratio_vs_A4"]
    worst = max(by["M1"]["max_abs_diff_vs_alone"], by["M4"]["max_abs_diff_vs_alone"])
    lines += [
        "",
        "targets:",
        f"  {'PASS' if speedup >= 2.5 else 'FAIL'} 4 members in one pass vs 4 separate runs: "
        f"M4/M1 = {speedup:.2f}x faster (target >= 2.5x)",
        f"  {'PASS' if overhead <= 1.3 else 'FAIL'} vs the in-process limit doing the same: "
        f"M1/A4 = {overhead:.2f}x (target <= 1.3x)",
        f"  {'PASS' if worst <= 1e-12 else 'FAIL'} scores: every member (M1, M4) vs that model "
        f"alone in-process: max abs diff {worst:.1e} (target <= 1e-12)",
    ]
    return "\n".join(lines)


def _write_report(name: str, scale: str, report: str, results: Any) -> None:
    print(report)
    (RESULTS / f"{name}-{scale}.md").write_text(report + "\n")
    (RESULTS / f"{name}-{scale}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {RESULTS / f'{name}-{scale}.md'}", flush=True)


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
