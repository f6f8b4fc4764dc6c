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
3. Live answers with fresh windowed features (``BATCH_SERVING_LIVE_WINDOW_JOBS``): every
   card's recent events in a redis-server (as the stream writes them), none of the cards in
   the predictions snapshot; GETs paced at 200 req/s (never cached: each answer reads the
   card's events and computes its windows as of the request): latency p50/p99.

``--only embedded|api|windowed`` runs one part (``make bench-live LIVE_ONLY=windowed``).
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


def paced(
    url: str, ids: list[Any], rate: float, model: str = MODEL
) -> tuple[list[float], list[str]]:
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
            r = client.get(f"{url}/v1/models/{model}/predictions/{entity}")
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
    parser.add_argument("--only", choices=["embedded", "api", "windowed"], default=None)
    parser.add_argument("--cards", type=int, default=20_000, help="cards in the online store")
    parser.add_argument("--window-requests", type=int, default=4000, help="windowed GETs")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "bench"))
    from threadpoolctl import threadpool_limits

    threadpool_limits(
        limits=1
    )  # single-row calls: a thread pool only adds wake-ups (both runtimes)
    entities = SIZES[args.entities]
    results: dict[str, Any] = {"entities": entities, "rate": args.rate}
    if args.only in (None, "embedded"):
        results["embedded"] = embedded_single_row(20_000)
    if args.only in (None, "api"):
        api_part(results, args, entities)
    if args.only in (None, "windowed"):
        results["windowed"] = windowed_part(args.cards, args.window_requests, args.rate)
    report = render(results, args.connections, args.seconds)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    name = f"live-{args.entities}" + (f"-{args.only}" if args.only else "")
    (RESULTS / f"{name}.md").write_text(report + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def api_part(results: dict[str, Any], args: Any, entities: int) -> None:
    """Part 2: snapshot hits with live fallback off/on, live misses and cache hits."""
    from api_bench import wrk
    from live import ApiProcess

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


WINDOW_MODEL = "fraud"


def windowed_part(cards: int, requests: int, rate: float) -> dict[str, Any]:
    """Part 3: a registry with the windowed model, a redis-server holding 8 events per card
    over the last 20 minutes, a serving root whose feature snapshot holds every card and whose
    predictions none, then ``requests`` GETs of distinct cards at ``rate`` req/s: with the
    windows (each answer reads Redis), and, as the baseline on the same machine, without
    (each card's first ask: scored from the feature snapshot alone, never a cache hit)."""
    from live import ApiProcess, RedisServer
    from windows_api import job_file, publish_features, recent_events, released
    from windows_oracle import spec

    from batch_serving.config import load_config
    from batch_serving.features.online import OnlineFeatureWriter, connect, online_prefix

    base = DATA / "windowed"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    tracking_uri = f"sqlite:///{base / 'mlflow.db'}"
    version = _register_windowed(tracking_uri)
    ids = [f"card{i}" for i in range(cards)]
    publish_features(base / "serving", WINDOW_MODEL, version, tracking_uri, ids)
    (base / "redis").mkdir()
    redis = RedisServer(base / "redis")
    try:
        job = job_file(base / "job", WINDOW_MODEL, tracking_uri, redis.url)
        writer = OnlineFeatureWriter(connect(redis.url), online_prefix(load_config(job)), spec())
        history = recent_events(ids, 8, time.time(), 1200)
        for batch, start in enumerate(range(0, len(history), 40_000)):
            writer.write(batch, released(history.iloc[start : start + 40_000]))
        live = {"BATCH_SERVING_LIVE_MODELS": json.dumps({WINDOW_MODEL: "scored"})}
        plans = {
            "windowed": {**live, "BATCH_SERVING_LIVE_WINDOW_JOBS": json.dumps([str(job)])},
            "snapshot_features": live,
        }
        asked = np.random.default_rng(5).permutation(ids)[: requests + 50].tolist()
        out: dict[str, Any] = {"cards": cards}
        for name, env in plans.items():
            with ApiProcess(["--root", str(base / "serving")], env) as api:
                paced(api.url, asked[:50], rate, WINDOW_MODEL)  # loads the model; warms up
                lat, src = paced(api.url, asked[50:], rate, WINDOW_MODEL)
            out[name] = {**percentiles(lat), "sources": sorted(set(src))}
            print(f"[windowed] {name}: {out[name]}", flush=True)
    finally:
        redis.stop()
    return out


def _register_windowed(tracking_uri: str) -> int:
    """The windowed model (``tests/windows_api.fit_model``) as ``fraud`` version 1."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from windows_api import FEATURES, fit_model, training_frame

    from batch_serving.demo import artifact_location

    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment("bench", artifact_location(tracking_uri))
    frame, _ = training_frame()
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            fit_model(),
            name="model",
            signature=infer_signature(frame[FEATURES].head(20)),
            registered_model_name=WINDOW_MODEL,
        )
    return int(info.registered_model_version)


def render(r: dict[str, Any], connections: int, seconds: int) -> str:
    """The report of the parts that ran, each with its targets."""
    lines = [
        f"# Embedded and live scoring ({r['entities']:,} entities with features, "
        f"{os.cpu_count()} cores shared by the load generator and the API)",
    ]
    targets: list[str] = []
    if "embedded" in r:
        lines += render_embedded(r, targets)
    if "snapshot_hits/off" in r:
        lines += render_api(r, connections, seconds, targets)
    if "windowed" in r:
        lines += render_windowed(r, targets)
    return "\n".join([*lines, "", "targets:", *targets])


def render_embedded(r: dict[str, Any], targets: list[str]) -> list[str]:
    emb = r["embedded"]
    onnx = emb["hgb/onnx"]["p99_ms"]
    targets.append(
        f"  {'PASS' if onnx <= 1.0 else 'MISS'} embedded ONNX single-row p99 {onnx:.3f} ms "
        "(target <= 1 ms)"
    )
    return [
        "",
        "Embedded single-row predict (in-process, one dict per call):",
        "",
        "| model | runtime | p50 ms | p99 ms |",
        "|---|---|---:|---:|",
        *(
            f"| {key.split('/')[0]} | {key.split('/')[1]} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} |"
            for key, v in emb.items()
        ),
    ]


def render_api(r: dict[str, Any], connections: int, seconds: int, targets: list[str]) -> list[str]:
    lines = [
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
    miss = r["live_miss/onnx"]["p99_ms"]
    cache = r["cache_hit/onnx"]["p99_ms"]
    base, on = r["snapshot_hits/off"], r["snapshot_hits/onnx"]
    targets += [
        f"  {'PASS' if miss <= 15 else 'MISS'} live miss (ONNX) p99 {miss:.2f} ms at "
        f"{r['rate']:.0f} req/s (target <= 15 ms)",
        f"  {'PASS' if cache <= 5 else 'MISS'} cache hit p99 {cache:.2f} ms (target <= 5 ms)",
        f"  {'PASS' if on['rps'] >= 3000 and on['p99_ms'] <= 5 else 'MISS'} snapshot hits with "
        f"live on: {on['rps']:.0f} req/s, p99 {on['p99_ms']:.2f} ms (off: {base['rps']:.0f} req/s, "
        f"p99 {base['p99_ms']:.2f} ms; target >= 3k req/s, p99 <= 5 ms)",
    ]
    return lines


def render_windowed(r: dict[str, Any], targets: list[str]) -> list[str]:
    part = r["windowed"]
    w = part["windowed"]
    targets.append(
        f"  {'PASS' if w['p99_ms'] <= 10 else 'MISS'} live answer with fresh aggregates p99 "
        f"{w['p99_ms']:.2f} ms at {r['rate']:.0f} req/s (target <= 10 ms)"
    )
    return [
        "",
        f"Live answers for cards the batch missed ({part['cards']:,} cards, 8 events each in "
        f"Redis, sklearn LogisticRegression), {w['n']} distinct cards paced at "
        f"{r['rate']:.0f} req/s, one keep-alive client:",
        "",
        "| features | p50 ms | p99 ms | sources |",
        "|---|---:|---:|---|",
        *(
            f"| {label} | {part[key]['p50_ms']:.2f} | {part[key]['p99_ms']:.2f} | "
            f"{', '.join(part[key]['sources'])} |"
            for key, label in (
                ("windowed", "fresh windows from Redis + feature snapshot"),
                ("snapshot_features", "feature snapshot only (baseline)"),
            )
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
