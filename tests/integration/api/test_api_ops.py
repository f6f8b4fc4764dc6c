"""Running the lookup API in production: the OpenAPI document (operation ids, the bearer
scheme), process/runtime and snapshot metrics, and several uvicorn workers from the env
factory, for real."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Scored
from live import ApiProcess, LiveServer
from prometheus_client.parser import text_string_to_metric_families

from batch_serving.api import create_app
from batch_serving.config import JobConfig, ServeSettings
from batch_serving.serving.format import read_snapshot_manifest
from batch_serving.serving.pointer import ServingLayout, read_pointer
from batch_serving.serving.publish import publish


@pytest.fixture
def published(scored: Scored, tmp_path: Path) -> JobConfig:
    cfg = scored.config(tmp_path / "serving")
    publish(cfg, scored.dates[1])
    return cfg


@pytest.fixture
def server(published: JobConfig, tmp_path: Path) -> Iterator[LiveServer]:
    tokens = tmp_path / "tokens"
    tokens.write_text("t0ken\n")
    settings = ServeSettings(snapshot_root=published.serving_root, auth_tokens_file=tokens)
    with LiveServer(create_app(settings)) as live:
        yield live


AUTH = {"Authorization": "Bearer t0ken"}


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Exposition text -> sample name -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_openapi_names_operations_and_declares_the_bearer_scheme(server: LiveServer) -> None:
    r = httpx.get(f"{server.url}/openapi.json")  # the document and /docs need no token
    assert r.status_code == 200
    assert httpx.get(f"{server.url}/docs").status_code == 200
    schema = r.json()
    operations = {
        (path, method): op for path, ops in schema["paths"].items() for method, op in ops.items()
    }
    assert {key: op["operationId"] for key, op in operations.items()} == {
        ("/v1/models/{model}/predictions/{entity_id}", "get"): "getPrediction",
        ("/v1/models/{model}/predictions:batchGet", "post"): "batchGetPredictions",
        ("/v1/models", "get"): "listModels",
        ("/health", "get"): "health",
        ("/v1/models/{model}:score", "post"): "scoreRows",  # live scoring (test_api_live.py)
        ("/v1/models/{model}/scoring-requests", "post"): "submitScoringRequest",
        ("/v1/models/{model}/scoring-requests/{request_id}", "get"): "getScoringRequest",
    }
    assert schema["components"]["securitySchemes"] == {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from BATCH_SERVING_AUTH_TOKENS(_FILE); required when the "
            "server has tokens configured.",
        }
    }
    secured = {path for (path, _), op in operations.items() if op.get("security")}
    assert secured == {path for path, _ in operations if path != "/health"}
    assert all(
        op["security"] == [{"bearerAuth": []}] for op in operations.values() if "security" in op
    )
    # ... which is where the middleware asks for the token
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.get(f"{server.url}/v1/models", headers=AUTH).status_code == 200
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_metrics_cover_the_process_runtime_and_the_served_snapshot(
    server: LiveServer, published: JobConfig
) -> None:
    found = samples(httpx.get(f"{server.url}/metrics", headers=AUTH).text)
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_objects_collected_total",
    ):
        assert name in found, name
    assert found["process_resident_memory_bytes"][0][1] > 10 * 2**20

    layout = ServingLayout(published.serving_root)
    pointer = read_pointer(layout, "served")
    assert pointer is not None
    manifest = read_snapshot_manifest(layout.snapshot_dir("served", pointer.current)).to_dict()
    published_at = dt.datetime.fromisoformat(manifest["published_at"]).timestamp()
    assert found["batch_serving_snapshot_published_timestamp_seconds"] == [
        ({"model": "served"}, pytest.approx(published_at, abs=1e-3))
    ]
    assert found["batch_serving_model_info"] == [
        (
            {
                "model": "served",
                "version": str(manifest["model_version"]),
                "snapshot": pointer.current,
                "run_date": manifest["run_date"],
            },
            1.0,
        )
    ]
    assert found["batch_serving_worker_info"] == [({"pid": str(os.getpid())}, 1.0)]


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.mark.slow
def test_env_factory_under_uvicorn_with_two_workers(scored: Scored, published: JobConfig) -> None:
    """`uvicorn 'batch_serving.api:app_from_env' --factory --workers 2`, settings from the
    environment only: both worker processes answer (health, lookups, metrics), then the whole
    process group stops."""
    command = ["-m", "uvicorn", "batch_serving.api:app_from_env", "--factory"]
    env = {
        "BATCH_SERVING_SNAPSHOT_ROOT": str(published.serving_root),
        "BATCH_SERVING_MAX_BATCH": "7",
    }
    expected = scored.expected[scored.dates[1]]
    with ApiProcess(["--workers", "2", "--host", "127.0.0.1"], env=env, command=command) as api:
        pids: set[str] = set()
        failures: list[str] = []
        deadline = time.monotonic() + 60

        def client() -> None:
            while len(pids) < 2 and time.monotonic() < deadline:
                # a new connection per round, so the workers' accept loops share them out
                with httpx.Client(base_url=api.url, timeout=10) as http:
                    health = http.get("/health")
                    entity, score = next(iter(expected.items()))
                    lookup = http.get(f"/v1/models/served/predictions/{entity}")
                    scrape = http.get("/metrics").text
                if health.status_code != 200 or lookup.status_code != 200:
                    failures.append(f"{health.status_code} {lookup.status_code}")
                elif lookup.json()["values"]["score"] != pytest.approx(score, abs=1e-12):
                    failures.append(lookup.text)
                pids.update(
                    labels["pid"] for labels, _ in samples(scrape)["batch_serving_worker_info"]
                )

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert len(pids) == 2, pids
        workers = {int(p) for p in pids}
        assert all(_ppid(pid) == api.proc.pid for pid in workers)  # uvicorn's own workers
        too_many = httpx.post(
            f"{api.url}/v1/models/served/predictions:batchGet", json={"ids": list(range(8))}
        )
        assert too_many.status_code == 413  # BATCH_SERVING_MAX_BATCH reached the workers
    for pid in workers:  # the group stopped: no worker outlives the test
        assert not Path(f"/proc/{pid}").exists()
