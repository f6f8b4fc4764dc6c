"""Lookup API benchmark: embedded snapshot vs Redis backend, measured in ONE run.

    make bench-api               # 10M entities
    make bench-api ENTITIES=1M   # quicker

Steps: write a committed predictions partition of N entities (ids are multiples of 3, so the
id space is sparse), ``publish`` it to the embedded store and to a throwaway redis-server, then
for each backend start ``batch-serving serve`` as its own process and drive it from a separate
load generator (wrk, Lua scripts picking random ids) over loopback:
  single  GET /v1/models/bench/predictions/{random id}
  batch   POST ...:batchGet with 100 random ids
Reported: requests/s, p50/p99 latency (wrk's), non-2xx count, snapshot load time (process start
to /health 200), API resident memory after the load (VmRSS: file-backed mapped pages included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batch_serving.config import JobConfig
from batch_serving.serving.publish import publish
from batch_serving.tables.layout import TableLayout
from batch_serving.tables.manifest import RunManifest, read_manifest, write_manifest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".bench_data" / "api"
RESULTS = ROOT / "bench_results"
RUN_DATE = dt.date(2026, 1, 1)
SIZES = {"1M": 1_000_000, "2M": 2_000_000, "10M": 10_000_000}
PUBLISH_TARGET_IDS_PER_S = 300_000
MODEL = "bench"

SINGLE_LUA = """
math.randomseed(7)
local n = tonumber(os.getenv("BS_N"))
request = function()
  return wrk.format("GET", "/v1/models/bench/predictions/" .. (3 * math.random(0, n - 1)))
end
"""
BATCH_LUA = """
math.randomseed(11)
local n = tonumber(os.getenv("BS_N"))
request = function()
  local ids = {}
  for i = 1, 100 do ids[i] = tostring(3 * math.random(0, n - 1)) end
  local body = '{"ids":[' .. table.concat(ids, ",") .. ']}'
  return wrk.format("POST", "/v1/models/bench/predictions:batchGet",
                    {["Content-Type"] = "application/json"}, body)
end
"""


def make_partition(out_root: Path, rows: int) -> None:
    """A committed partition as the score job leaves it (Parquet + manifest), cached."""
    part = TableLayout(out_root, "predictions", MODEL).partition_dir(RUN_DATE)
    if read_manifest(part) is not None:
        return
    part.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = rng.permutation(rows).astype(np.int64) * 3
    step = 2_000_000
    for n, start in enumerate(range(0, rows, step)):
        chunk = ids[start : start + step]
        table = pa.table({"id": chunk, "score": rng.random(len(chunk))})
        pq.write_table(table, part / f"part-{n:05d}.parquet")
    model_uri = f"models:/{MODEL}/1"
    manifest = RunManifest.model_validate(
        {
            "job": "bench",
            "run_id": "bench-run",
            "run_date": str(RUN_DATE),
            "started_at": f"{RUN_DATE}T00:00:00+00:00",
            "config_digest": "bench",
            "model": {
                "name": MODEL,
                "version": 1,
                "uri": model_uri,
                "artifact_uri": "unused",
                "registry_uri": "unused",
            },
            "scoring": {
                "engine": "bench",
                "kind": "binary",
                "features": [],
                "output_columns": ["score"],
                "delivery": "bench",
                "artifact_mb": 0.0,
                "model_loads": 0,
                "python_workers": 0,
            },
            "input": {"path": "unused", "rows": rows},
            "quarantine": {"path": "unused", "rows": 0, "max_bad_rows": 0},
            "output": {"path": str(part), "rows": rows, "files": n + 1},
            "versions": {},
        }
    )
    write_manifest(part, manifest)


def wrk(url: str, script: str, entities: int, seconds: int, connections: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", fh.name, url],
        capture_output=True,
        text=True,
        env={**os.environ, "BS_N": str(entities)},
        check=True,
    ).stdout
    os.unlink(fh.name)

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(non2xx[1]) if non2xx else 0,
        "socket_errors": errors[1] if errors else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", choices=list(SIZES), default="10M")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--publish-only", action="store_true", help="only the publish timings (no API, no wrk)"
    )
    args = parser.parse_args(argv)
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: run `make bench-api` (it installs it)", file=sys.stderr)
            return 2
    entities = SIZES[args.entities]
    base = DATA / args.entities
    t0 = time.perf_counter()
    make_partition(base / "out", entities)
    print(f"partition of {entities} entities ready in {time.perf_counter() - t0:.1f}s", flush=True)

    sys.path.insert(0, str(ROOT / "tests"))
    from live import ApiProcess, RedisServer  # the tests' helpers (own process groups)

    results: dict[str, Any] = {"entities": entities, "seconds": args.seconds}
    redis = RedisServer(base)
    redis_url = redis.url
    try:
        serving = base / "serving"
        shutil.rmtree(serving, ignore_errors=True)
        cfg = JobConfig.model_validate(
            {
                "job": "bench",
                "model": {"name": MODEL, "version": 1, "tracking_uri": "sqlite:///unused.db"},
                "input": {"path": str(base / "in")},
                "entity_columns": ["id"],
                "output": {"root": str(base / "out")},
                "publish": {"root": str(serving), "backends": ["embedded"], "redis_url": redis_url},
            }
        )
        t0 = time.perf_counter()
        done = publish(cfg, RUN_DATE)
        results["publish_embedded_s"] = round(time.perf_counter() - t0, 2)
        snapshot_mb = (done.path / "predictions.arrow").stat().st_size / 1e6 * (1e6 / 2**20)
        results["snapshot_mb"] = round(snapshot_mb, 1)
        t0, cpu0, redis_cpu0 = time.perf_counter(), time.process_time(), redis_cpu_s(redis_url)
        publish(cfg.with_publish(backends=["redis"]), RUN_DATE)
        results["publish_redis_s"] = round(time.perf_counter() - t0, 2)
        # CPU seconds of both sides: on a shared machine the wall-clock rate mostly measures
        # how long the two processes waited for a core
        results["publish_redis_cpu_s"] = {
            "publisher": round(time.process_time() - cpu0, 2),
            "redis_server": round(redis_cpu_s(redis_url) - redis_cpu0, 2),
        }
        results["publish_redis_ids_per_s"] = round(entities / results["publish_redis_s"])
        print(
            f"published: embedded {results['publish_embedded_s']}s, redis "
            f"{results['publish_redis_s']}s; snapshot {snapshot_mb:.0f} MiB",
            flush=True,
        )
        print(publish_line(results), flush=True)
        if args.publish_only:
            return 0

        # process baseline: the same API with nothing to serve (imports, uvicorn, metrics)
        empty = base / "empty"
        empty.mkdir(exist_ok=True)
        with ApiProcess(["--root", str(empty)], ready=frozenset({200, 503})) as api:
            results["baseline"] = api.memory_mb()

        for backend in ("embedded", "redis"):
            with ApiProcess(
                ["--root", str(serving), "--backend", backend, "--redis-url", redis_url],
                {"BATCH_SERVING_MODELS": json.dumps([MODEL])},
            ) as api:
                wrk(api.url, SINGLE_LUA, entities, 2, args.connections)  # warm-up
                single = wrk(api.url, SINGLE_LUA, entities, args.seconds, args.connections)
                batch = wrk(api.url, BATCH_LUA, entities, args.seconds, args.connections)
                results[backend] = {
                    "load_s": round(api.load_s, 2),
                    **api.memory_mb(),
                    "single": single,
                    "batch100": batch,
                }
                print(f"{backend}: {json.dumps(results[backend])}", flush=True)

    finally:
        redis.stop()
    report = render(results, args.connections)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"api-{args.entities}.md").write_text(report + "\n")
    (RESULTS / f"api-{args.entities}.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def render(r: dict[str, Any], connections: int) -> str:
    lines = [
        f"Lookup API, {r['entities']:,} entities, one API process, wrk -t1 -c{connections} "
        f"-d{r['seconds']}s on loopback (2 cores shared by wrk, the API and redis-server)",
        "",
        "| backend | request | req/s | p50 ms | p99 ms | non-2xx | load s | API RSS MiB "
        "(private + file-backed) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend in ("embedded", "redis"):
        b = r[backend]
        for kind in ("single", "batch100"):
            m = b[kind]
            lines.append(
                f"| {backend} | {kind} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
                f"| {m['non_2xx']} | {b['load_s']} | {b['rss_mb']} "
                f"({b['anon_mb']} + {b['file_mb']}) |"
            )
    e, s = r["embedded"], r["redis"]
    ratio = e["rss_mb"] / r["snapshot_mb"]
    growth = (e["rss_mb"] - r["baseline"]["rss_mb"]) / r["snapshot_mb"]
    checks = [
        ("single-key p99 <= 5 ms", e["single"]["p99_ms"] <= 5.0, f"{e['single']['p99_ms']:.2f} ms"),
        ("single-key >= 3000 req/s", e["single"]["rps"] >= 3000, f"{e['single']['rps']:.0f}"),
        (
            "embedded at least as fast as redis (single and batch req/s)",
            e["single"]["rps"] >= s["single"]["rps"]
            and e["batch100"]["rps"] >= s["batch100"]["rps"],
            f"{e['single']['rps'] / s['single']['rps']:.2f}x / "
            f"{e['batch100']['rps'] / s['batch100']['rps']:.2f}x",
        ),
        (
            "API RSS <= 1.5x snapshot file (whole process)",
            ratio <= 1.5,
            f"{ratio:.2f}x of {r['snapshot_mb']} MiB",
        ),
        (
            "API RSS above the empty-API baseline <= 1.5x snapshot file",
            growth <= 1.5,
            f"{growth:.2f}x (baseline {r['baseline']['rss_mb']} MiB with no snapshot)",
        ),
        (
            f"redis publish >= {PUBLISH_TARGET_IDS_PER_S:,} ids/s",
            r["publish_redis_ids_per_s"] >= PUBLISH_TARGET_IDS_PER_S,
            f"{r['publish_redis_ids_per_s']:,} ids/s",
        ),
        (
            "no errors",
            all(b[k]["non_2xx"] == 0 for b in (e, s) for k in ("single", "batch100")),
            "",
        ),
    ]
    lines += [
        "",
        f"publish: embedded {r['publish_embedded_s']} s, redis {r['publish_redis_s']} s",
        publish_line(r),
        "",
        "targets:",
    ]
    lines += [f"  {'PASS' if ok else 'MISS'} {name}: {got}" for name, ok, got in checks]
    return "\n".join(lines)


def publish_line(r: dict[str, Any]) -> str:
    """The Redis publish rate: ids written (buckets, meta, pointer flip) per wall-clock second,
    and the CPU seconds the publisher and redis-server spent on it."""
    cpu = r["publish_redis_cpu_s"]
    return (
        f"redis publish rate: {r['publish_redis_ids_per_s']:,} ids/s ({r['entities']:,} ids in "
        f"{r['publish_redis_s']} s; target >= {PUBLISH_TARGET_IDS_PER_S:,} ids/s); CPU: "
        f"publisher {cpu['publisher']} s, redis-server {cpu['redis_server']} s"
    )


def redis_cpu_s(url: str) -> float:
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


if __name__ == "__main__":
    sys.exit(main())
