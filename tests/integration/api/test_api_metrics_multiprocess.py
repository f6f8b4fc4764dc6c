"""/metrics with several uvicorn workers: with PROMETHEUS_MULTIPROC_DIR every scrape, whichever
worker answers it, sums the counters of all workers, so they only go up and add up to the
requests sent. Misconfigurations are ConfigErrors naming the directory."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from live import ApiProcess
from prometheus_client.parser import text_string_to_metric_families

from batch_serving.api import create_app
from batch_serving.api.routes import GET_ROUTE
from batch_serving.config import ServeSettings
from batch_serving.errors import ConfigError

UVICORN = ["-m", "uvicorn", "batch_serving.api:app_from_env", "--factory"]


def scrape(url: str) -> tuple[float, set[str]]:
    """(GET lookups counted, all statuses; pid of the worker that answered), on a new
    connection so the workers' accept loops share the scrapes out."""
    with httpx.Client(base_url=url, timeout=10) as http:
        text = http.get("/metrics").text
    counted, pids = 0.0, set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "batch_serving_requests_total" and (
                sample.labels["route"] == GET_ROUTE
            ):
                counted += sample.value
            if sample.name == "batch_serving_worker_info":
                pids.add(sample.labels["pid"])
    return counted, pids


@pytest.mark.slow
def test_two_workers_count_every_request_once_and_never_go_back(tmp_path: Path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    root = tmp_path / "serving"
    root.mkdir()  # nothing published: lookups answer 404, counted all the same
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared), "BATCH_SERVING_SNAPSHOT_ROOT": str(root)}
    sent = 60
    args = ["--workers", "2", "--host", "127.0.0.1"]
    with ApiProcess(args, env=env, command=UVICORN, ready=frozenset({200, 503})) as api:
        statuses: list[int] = []

        def lookups() -> None:
            for i in range(sent):
                with httpx.Client(base_url=api.url, timeout=10) as http:
                    statuses.append(http.get(f"/v1/models/churn/predictions/{i}").status_code)

        counted, answered = scrape(api.url)
        seen = [counted]
        client = threading.Thread(target=lookups)
        client.start()
        while client.is_alive():
            counted, pids = scrape(api.url)
            seen.append(counted)
            answered |= pids
        client.join()
        deadline = time.monotonic() + 30
        while len(answered) < 2 or seen[-1] < sent:
            if time.monotonic() > deadline:
                break
            counted, pids = scrape(api.url)
            seen.append(counted)
            answered |= pids
        for _ in range(4):  # after the last request: every scrape, any worker, says the same
            counted, pids = scrape(api.url)
            seen.append(counted)
            answered |= pids
    assert len(statuses) == sent and set(statuses) == {404}
    assert len(answered) == 2, answered  # the scrapes were answered by both workers
    assert seen == sorted(seen), seen  # monotonic across workers
    assert seen[-5:] == [float(sent)] * 5
    assert {p.name.split("_")[0] for p in shared.iterdir()} >= {"counter", "histogram"}
    assert len({p.name for p in shared.iterdir() if p.name.startswith("counter_")}) == 2


def test_a_missing_directory_is_a_config_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-dir"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(missing))
    with pytest.raises(ConfigError, match=f"PROMETHEUS_MULTIPROC_DIR {missing} is not a dir"):
        create_app(ServeSettings(snapshot_root=tmp_path))


def test_a_directory_set_after_prometheus_client_loaded_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This test process imported prometheus_client without the variable: its counters are
    private to it, so claiming shared counters would report wrong totals."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="set after prometheus_client was imported"):
        create_app(ServeSettings(snapshot_root=tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing written to the directory


def test_without_the_variable_each_app_counts_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    first = create_app(ServeSettings(snapshot_root=tmp_path)).state.serving.metrics
    second = create_app(ServeSettings(snapshot_root=tmp_path)).state.serving.metrics
    first.requests.labels("GET", GET_ROUTE, "404").inc(3)
    text = second.exposition().decode()
    assert "batch_serving_requests_total{" not in text
    assert f'route="{GET_ROUTE}",status="404"}} 3.0' in first.exposition().decode()
    assert "process_resident_memory_bytes" in text
