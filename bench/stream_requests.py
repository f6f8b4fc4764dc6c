"""Asynchronous scoring requests' round trip, measured by ``stream_bench`` while events stream.

A real ``batch-serving serve`` process (its own process group, loopback) takes
``POST /v1/models/{m}/scoring-requests`` (one churn-like row each, at a steady pace) and the
running stream scores them with the landing files around them. Latency of a request = from
sending the POST to the first ``GET .../{id}`` that answers 200 (polled every 20 ms): posted ->
result readable, the issue's definition, HTTP included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from batch_serving.config import JobConfig

POLL_S = 0.02


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ApiServer:
    """``batch-serving serve`` with the stream's job file, until ``stop``."""

    def __init__(self, cfg: JobConfig, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        (work / "serving").mkdir(exist_ok=True)
        job_file = work / "stream-job.yaml"
        job_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        import batch_serving

        src = str(Path(batch_serving.__file__).resolve().parents[1])
        self.url = f"http://127.0.0.1:{_free_port()}"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
            "BATCH_SERVING_SNAPSHOT_ROOT": str(work / "serving"),
            "BATCH_SERVING_STREAM_JOBS": f'["{job_file}"]',
        }
        port = self.url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batch_serving.cli", "serve", "--port", port],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("the API did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


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
