"""Embedded and live scoring benchmark (issue #15), measured in ONE run.

    make bench-live                 # 200k entities in the feature snapshot
    make bench-live ENTITIES=50k    # quicker

1. Embedded single-row ``predict`` (in-process): the demo churn pipelines (HGB, LogReg) as
   ONNX (``batch_serving.embedded``) vs the same sklearn pipelines, p50/p99 over 3000 calls.
2. Lookup API with live fallback (``batch-serving serve`` as its own process, loopback):
   a snapshot holding every other id, and the feature snapshot holding every id.
   * snapshot hits, wrk (as ``make bench-api``): live fallback off vs on, same snapshot;
   * live misses: ids absent from the snapshot, paced at 200 req/s (one client, keep-alive),
     each id asked once: latency p50/p99, for the ONNX export and for the sklearn model;
   * cache hits: the same ids again at 200 req/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_serving import sample_data

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".bench_data" / "live"
RESULTS = ROOT / "bench_results"
SIZES = {"50k": 50_000, "200k": 200_000, "1M": 1_000_000}
MODEL = "churn"
RULES = [
    {"when": "score >= 0.7", "action": "retention_call"},
    {"when": "score >= 0.4", "action": "discount_offer"},
    {"otherwise": "no_action"},
]
HIT_LUA = """
math.randomseed(7)
local n = tonumber(os.getenv("BS_N"))
request = function()
  return wrk.format("GET", "/v1/models/churn/predictions/" .. (2 * math.random(0, n / 2 - 1)))
end
"""


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "n": len(samples),
    }


def embedded_single_row(train_rows: int) -> dict[str, Any]:
    """Single-row predict latency: ONNX (embedded) vs sklearn, both demo pipelines."""
    from batch_serving.embedded import EmbeddedModel
    from batch_serving.models.adapters import LoadedModel, OutputRequest, describe
    from batch_serving.models.onnx_convert import convert

    frame = sample_data.customer_features(train_rows, seed=1234)
    rows = sample_data.customer_features(3000, seed=5).drop(columns=["churned"]).to_dict("records")
    out: dict[str, Any] = {}
    for estimator in ("hgb", "logreg"):
        model = _fit(frame, estimator)
        request = OutputRequest(positive_label=1)
        spec = describe(LoadedModel("sklearn", model, None), request, estimator)
        converted = convert(model, spec, {c: "string" for c in sample_data.CATEGORICAL})
        onnx_model = converted.model()
        onnx_spec = describe(LoadedModel("onnx", onnx_model, None), request, estimator)
        runtimes = {
            "onnx": EmbeddedModel(onnx_spec, onnx_model, estimator),
            "sklearn": EmbeddedModel(spec, model, estimator),
        }
        for name, embedded in runtimes.items():
            calls = rows if name == "onnx" else rows[:300]  # sklearn: ms a call
            for row in calls[:50]:
                embedded.predict(row)
            samples = []
            for row in calls:
                start = time.perf_counter()
                embedded.predict(row)
                samples.append(time.perf_counter() - start)
            out[f"{estimator}/{name}"] = {**percentiles(samples), "onnx_dtype": converted.dtype}
            print(f"[embedded] {estimator} {name}: {out[f'{estimator}/{name}']}", flush=True)
    return out


def _fit(frame: Any, estimator: str) -> Any:
    from batch_serving.demo import pipeline

    return pipeline(estimator).fit(frame[list(sample_data.FEATURES)], frame["churned"])


def prepare(base: Path, entities: int) -> tuple[str, Path]:
    """Registry with churn (HGB) + churn_onnx, and a serving root: predictions for even ids,
    features for every id (as ``publish`` with ``publish.features: true`` lays them out)."""
    from mlflow import MlflowClient

    from batch_serving.demo import register_pipeline
    from batch_serving.models.uris import model_config
    from batch_serving.runs.export_onnx import export_onnx
    from batch_serving.serving.features import FEATURES_DIR
    from batch_serving.serving.format import build_table, write_snapshot
    from batch_serving.serving.pointer import ServingLayout, write_pointer

    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    tracking_uri = f"sqlite:///{base / 'mlflow.db'}"
    version = register_pipeline(tracking_uri, MODEL, sample_data.customer_features(20_000), "hgb")
    MlflowClient(tracking_uri).set_registered_model_alias(MODEL, "champion", str(version))
    features = sample_data.customer_features(entities, seed=5).drop(columns=["churned"])
    part = base / "warehouse" / "ds=2026-01-01"
    part.mkdir(parents=True)
    table = pa.Table.from_pandas(features, preserve_index=False)
    pq.write_table(table, part / "part-0.parquet")
    done = export_onnx(model_config(f"models:/{MODEL}@champion", tracking_uri), part)
    print(f"[live] exported: {done.registered} ({done.report.lines()[0]})", flush=True)

    layout = ServingLayout(base / "serving")
    snapshot_id = f"2026-01-01_v{version}_bench"
    directory = layout.snapshot_dir(MODEL, snapshot_id)
    even = table.filter(pc.equal(pc.bit_wise_and(table["customer_id"], 1), 0))
    rng = np.random.default_rng(0)
    predictions = pa.table({"customer_id": even["customer_id"], "score": rng.random(len(even))})
    common = {
        "model": MODEL,
        "model_version": version,
        "model_uri": f"models:/{MODEL}/{version}",
        "run_date": "2026-01-01",
        "run_id": "bench",
        "entity_columns": ["customer_id"],
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_snapshot(
        build_table(predictions, ["customer_id"], ["score"]),
        directory,
        {**common, "snapshot_id": snapshot_id},
    )
    values = [c for c in table.column_names if c != "customer_id"]
    write_snapshot(
        build_table(table, ["customer_id"], values),
        directory / FEATURES_DIR,
        {
            **common,
            "snapshot_id": f"features-{snapshot_id}",
            "tracking_uri": tracking_uri,
            "registry_uri": tracking_uri,
            "positive_label": 1,
            "score_column": "score",
            "rules": RULES,
        },
    )
    write_pointer(layout, MODEL, snapshot_id, [])
    return tracking_uri, base / "serving"


def paced(url: str, ids: list[int], rate: float) -> tuple[list[float], list[str]]:
    """GET each id once at ``rate`` req/s (one keep-alive client); latencies and sources."""
    import httpx

    samples, sources = [], []
    interval = 1.0 / rate
    with httpx.Client(timeout=120) as client:  # the first miss loads the model
        next_at = time.perf_counter()
        for entity in ids:
            now = time.perf_counter()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval
            start = time.perf_counter()
            r = client.get(f"{url}/v1/models/{MODEL}/predictions/{entity}")
            samples.append(time.perf_counter() - start)
            sources.append(r.json().get("source", str(r.status_code)))
    return samples, sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", choices=list(SIZES), default="200k")
    parser.add_argument("--misses", type=int, default=2000, help="live misses per model")
    parser.add_argument("--rate", type=float, default=200.0, help="req/s for misses and cache")
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration (snapshot hits)")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "bench"))
    from api_bench import wrk
    from live import ApiProcess
    from threadpoolctl import threadpool_limits

    threadpool_limits(
        limits=1
    )  # single-row calls: a thread pool only adds wake-ups (both runtimes)
    entities = SIZES[args.entities]
    results: dict[str, Any] = {"entities": entities, "rate": args.rate}
    results["embedded"] = embedded_single_row(20_000)
    _, serving = prepare(DATA, entities)
    odd = [2 * i + 1 for i in np.random.default_rng(3).permutation(entities // 2).tolist()]
    plans = {
        "off": {},
        "onnx": {
            "BATCH_SERVING_LIVE_MODELS": json.dumps({MODEL: f"models:/{MODEL}_onnx@champion"})
        },
        "sklearn": {"BATCH_SERVING_LIVE_MODELS": json.dumps({MODEL: "scored"})},
    }
    for n, (name, env) in enumerate(plans.items()):
        with ApiProcess(["--root", str(serving)], env) as api:
            wrk(api.url, HIT_LUA, entities, 2, args.connections)  # warm-up
            hits = wrk(api.url, HIT_LUA, entities, args.seconds, args.connections)
            results[f"snapshot_hits/{name}"] = hits
            print(f"[live] snapshot hits, live {name}: {hits}", flush=True)
            if name == "off":
                continue
            ids = odd[n * args.misses : (n + 1) * args.misses]
            paced(api.url, ids[:20], args.rate)  # loads the model; warms the path
            lat, src = paced(api.url, ids[20:], args.rate)
            results[f"live_miss/{name}"] = {**percentiles(lat), "sources": sorted(set(src))}
            lat, src = paced(api.url, ids[20:], args.rate)
            results[f"cache_hit/{name}"] = {**percentiles(lat), "sources": sorted(set(src))}
            print(
                f"[live] {name}: miss {results[f'live_miss/{name}']}, "
                f"cache {results[f'cache_hit/{name}']}",
                flush=True,
            )
    report = render(results, args.connections, args.seconds)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"live-{args.entities}.md").write_text(report + "\n")
    (RESULTS / f"live-{args.entities}.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def render(r: dict[str, Any], connections: int, seconds: int) -> str:
    emb = r["embedded"]
    lines = [
        f"# Embedded and live scoring ({r['entities']:,} entities with features, "
        f"{os.cpu_count()} cores shared by the load generator and the API)",
        "",
        "Embedded single-row predict (in-process, one dict per call):",
        "",
        "| model | runtime | p50 ms | p99 ms |",
        "|---|---|---:|---:|",
        *(
            f"| {key.split('/')[0]} | {key.split('/')[1]} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} |"
            for key, v in emb.items()
        ),
        "",
        f"Lookup API (one process): snapshot hits wrk -t1 -c{connections} -d{seconds}s; "
        f"live misses and cache hits paced at {r['rate']:.0f} req/s, one keep-alive client:",
        "",
        "| live fallback | snapshot hits req/s | hit p99 ms | live miss p50/p99 ms "
        "| cache hit p50/p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("off", "onnx", "sklearn"):
        hits = r[f"snapshot_hits/{name}"]
        miss, cache = r.get(f"live_miss/{name}"), r.get(f"cache_hit/{name}")
        lines.append(
            f"| {name} | {hits['rps']:.0f} | {hits['p99_ms']:.2f} | "
            + (f"{miss['p50_ms']:.2f} / {miss['p99_ms']:.2f} | " if miss else "- | ")
            + (f"{cache['p50_ms']:.2f} / {cache['p99_ms']:.2f} |" if cache else "- |")
        )
    onnx = emb["hgb/onnx"]["p99_ms"]
    miss = r["live_miss/onnx"]["p99_ms"]
    cache = r["cache_hit/onnx"]["p99_ms"]
    base, on = r["snapshot_hits/off"], r["snapshot_hits/onnx"]
    lines += [
        "",
        "targets:",
        f"  {'PASS' if onnx <= 1.0 else 'MISS'} embedded ONNX single-row p99 {onnx:.3f} ms "
        "(target <= 1 ms)",
        f"  {'PASS' if miss <= 15 else 'MISS'} live miss (ONNX) p99 {miss:.2f} ms at "
        f"{r['rate']:.0f} req/s (target <= 15 ms)",
        f"  {'PASS' if cache <= 5 else 'MISS'} cache hit p99 {cache:.2f} ms (target <= 5 ms)",
        f"  {'PASS' if on['rps'] >= 3000 and on['p99_ms'] <= 5 else 'MISS'} snapshot hits with "
        f"live on: {on['rps']:.0f} req/s, p99 {on['p99_ms']:.2f} ms (off: {base['rps']:.0f} req/s, "
        f"p99 {base['p99_ms']:.2f} ms; target >= 3k req/s, p99 <= 5 ms)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
