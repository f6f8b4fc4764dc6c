"""Asynchronous scoring requests' round trip, measured by ``stream_bench`` while events stream.

A real ``batch-serving serve`` process (its own process group, loopback) takes
``POST /v1/models/{m}/scoring-requests`` (one churn-like row each, at a steady pace) and the
running stream scores them with the landing files around them. Latency of a request = from
sending the POST to the first ``GET .../{id}`` that answers 200 (polled every 20 ms): posted ->
result readable, the issue's definition, HTTP included.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from batch_serving.config import JobConfig

POLL_S = 0.02


def stream_api(cfg: JobConfig, work: Path) -> Any:
    """``batch-serving serve`` with the stream's job file: the tests' ``ApiProcess`` (its own
    process group, loopback, a free port); ready once ``/health`` answers (503: nothing
    published yet, which is fine for requests)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from live import ApiProcess

    (work / "serving").mkdir(parents=True, exist_ok=True)
    job_file = work / "stream-job.yaml"
    job_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    env = {
        "BATCH_SERVING_SNAPSHOT_ROOT": str(work / "serving"),
        "BATCH_SERVING_STREAM_JOBS": f'["{job_file}"]',
    }
    return ApiProcess([], env=env, ready=frozenset({200, 503}), timeout_s=120)


def request_round_trips(
    url: str, model: str, rows: list[dict[str, Any]], every_s: float, timeout_s: float = 30
) -> dict[str, Any]:
    """POST one row per request every ``every_s``; poll each until 200. p50/p99/max seconds."""
    route = f"/v1/models/{model}/scoring-requests"
    pending: dict[str, float] = {}
    latencies: list[float] = []
    failed = 0
    with httpx.Client(base_url=url, timeout=5) as http:
        next_post = time.monotonic()
        queue = list(rows)
        while queue or pending:
            now = time.monotonic()
            if queue and now >= next_post:
                sent = time.monotonic()
                answer = http.post(route, json={"rows": [queue.pop(0)]})
                if answer.status_code != 202:
                    raise SystemExit(f"POST {route}: {answer.status_code} {answer.text}")
                pending[answer.json()["request_id"]] = sent
                next_post += every_s
            for request_id, sent in list(pending.items()):
                status = http.get(f"{route}/{request_id}").status_code
                if status == 200:
                    latencies.append(time.monotonic() - sent)
                    del pending[request_id]
                elif time.monotonic() - sent > timeout_s:
                    failed += 1
                    del pending[request_id]
            time.sleep(POLL_S)
    lat = np.asarray(latencies)
    result = {
        "requests": len(rows),
        "answered": len(latencies),
        "timed_out": failed,
        "p50_s": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
        "p99_s": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
        "max_s": round(float(lat.max()), 3) if len(lat) else None,
    }
    result["meets_targets"] = bool(
        len(lat) == len(rows) and result["p50_s"] <= 1.5 and result["p99_s"] <= 3.0
    )
    return result
