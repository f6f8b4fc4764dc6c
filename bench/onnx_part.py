"""``score_bench.py --only onnx``: the same engine (arrow_direct) scoring with the ONNX export
of each model (``<kind>_onnx``, exported through ``export-onnx``'s parity gate on the warm-up
partition) vs with the sklearn model itself; interleaved rounds, median, same session."""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from batch_serving.config import JobConfig
from batch_serving.runs.job import run_score

RUN_DATE = dt.date(2026, 1, 1)


def ensure_exported(tracking_uri: str, kind: str, partition: Path) -> str:
    """Export ``<kind>@champion`` once (the gate must pass); returns the ONNX dtype."""
    from mlflow import MlflowClient

    from batch_serving.models.uris import model_config
    from batch_serving.runs.export_onnx import export_onnx

    try:
        mv = MlflowClient(tracking_uri).get_model_version_by_alias(f"{kind}_onnx", "champion")
        return str(mv.tags.get("onnx_input_dtype"))
    except Exception:
        pass
    done = export_onnx(model_config(f"models:/{kind}@champion", tracking_uri), partition)
    print(f"[onnx] exported {kind}: " + "; ".join(done.report.lines()[:4]), flush=True)
    return done.report.onnx_dtype


def measure_onnx(
    bench: Any,
    rows: int,
    reps: int,
    job_dict: Callable[..., dict[str, Any]],
    scores_by_id: Callable[[Path, int], np.ndarray],
    warm_date: dt.date,
) -> list[dict[str, Any]]:
    results = []
    for kind in ("hgb", "logreg"):
        dtype = ensure_exported(bench.tracking_uri, kind, bench.warm)
        cfgs = {
            runtime: JobConfig.model_validate(
                job_dict(
                    name,
                    bench.tracking_uri,
                    bench.table_root,
                    "arrow_direct",
                    bench.scratch / f"onnx-{name}",
                )
            )
            for runtime, name in (("sklearn", kind), ("onnx", f"{kind}_onnx"))
        }
        for cfg in cfgs.values():  # warm-up: workers load each model once
            run_score(bench.spark, cfg, warm_date)
        times: dict[str, list[float]] = {r: [] for r in cfgs}
        outputs: dict[str, Path] = {}
        for round_ in range(reps):
            for runtime, cfg in cfgs.items():
                print(f"[onnx] {kind} {runtime} round {round_ + 1}/{reps} ...", flush=True)
                start = time.perf_counter()
                manifest = run_score(bench.spark, cfg, RUN_DATE).manifest
                times[runtime].append(time.perf_counter() - start)
                outputs[runtime] = Path(manifest.output.path)
        got = scores_by_id(outputs["onnx"], rows)
        ref = scores_by_id(outputs["sklearn"], rows)
        sk, ox = statistics.median(times["sklearn"]), statistics.median(times["onnx"])
        results.append(
            {
                "model": kind,
                "onnx_dtype": dtype,
                "sklearn_s": round(sk, 3),
                "onnx_s": round(ox, 3),
                "onnx_vs_sklearn": round(ox / sk, 3),
                "max_abs_diff": float(np.max(np.abs(got - ref))),
                "runs": {k: [round(t, 3) for t in v] for k, v in times.items()},
            }
        )
    return results


def render_onnx(results: list[dict[str, Any]], scale: str, rows: int, reps: int) -> str:
    lines = [
        f"# ONNX vs sklearn, arrow_direct engine ({scale}: {rows:,} rows x 20 float64 features, "
        f"{os.cpu_count()} cores, median of {reps}, interleaved)",
        "",
        "| model | onnx inputs | sklearn s | onnx s | onnx / sklearn | max abs diff |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['onnx_dtype']} | {r['sklearn_s']:.2f} | {r['onnx_s']:.2f} | "
            f"{r['onnx_vs_sklearn']:.2f} | {r['max_abs_diff']:.1e} |"
        )
    return "\n".join(lines)
