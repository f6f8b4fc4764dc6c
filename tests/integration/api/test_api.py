"""Lookup API over real HTTP (uvicorn on loopback): values equal the in-process model's output."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Scored
from live import ApiProcess, LiveServer

from batch_serving.api.app import create_app
from batch_serving.config import JobConfig, ServeSettings
from batch_serving.serving.publish import publish, rollback

Serve = Callable[..., LiveServer]
JSON = {"content-type": "application/json"}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start the app on a free port with the given settings; stopped after the test."""
    started: list[LiveServer] = []

    def _serve(**settings: Any) -> LiveServer:
        values = {"snapshot_root": tmp_path / "serving", "poll_interval_s": 0.05, **settings}
        server = LiveServer(create_app(ServeSettings(**values))).__enter__()
        started.append(server)
        return server

    yield _serve
    for server in started:
        server.__exit__()


@pytest.fixture
def published(scored: Scored, tmp_path: Path) -> JobConfig:
    cfg = scored.config(tmp_path / "serving")
    publish(cfg, scored.dates[1])
    return cfg


def test_get_returns_the_model_score_version_and_date(scored: Scored, published, serve) -> None:
    server = serve()
    day = scored.dates[1]
    for entity, score in list(scored.expected[day].items())[:20]:
        r = httpx.get(f"{server.url}/v1/models/served/predictions/{entity}")
        assert r.status_code == 200
        body = r.json()
        assert body["values"]["score"] == pytest.approx(score, abs=1e-12)
        assert (body["model"], body["entity_id"], body["as_of"]) == (
            "served",
            str(entity),
            str(day),
        )
        assert body["model_version"] >= 1 and body["snapshot"].startswith(f"{day}_v")


def test_unknown_ids_models_and_malformed_ids(published, serve) -> None:
    url = serve().url
    cases = {
        "/v1/models/served/predictions/123456789": (404, "entity_not_found"),
        "/v1/models/nope/predictions/1": (404, "model_not_found"),
        "/v1/models/served/predictions/abc": (422, "invalid_entity_id"),
        "/v1/models/served/predictions/99999999999999999999": (422, "invalid_entity_id"),
        "/v1/models/served/predictions/1%20OR%201=1": (422, "invalid_request"),
        "/v1/models/served/predictions/..%2F..%2Fetc%2Fpasswd": (404, "not_found"),
        "/v1/models/..%2Fserved/predictions/1": (404, "not_found"),
        "/v1/models/../predictions/1": (404, "not_found"),
        "/v1/models/.hidden/predictions/1": (422, "invalid_request"),
    }
    for path, (status, code) in cases.items():
        r = httpx.get(url + path)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), path
        assert "Traceback" not in r.text and "/serving" not in r.text


def test_batch_get_found_missing_and_limits(scored: Scored, published, serve) -> None:
    url = serve(max_batch=5).url + "/v1/models/served/predictions:batchGet"
    expected = scored.expected[scored.dates[1]]

    r = httpx.post(url, json={"ids": [3, "4", 777777, "5"]})
    assert r.status_code == 200
    body = r.json()
    assert [x["entity_id"] for x in body["results"]] == ["3", "4", "5"]
    for item in body["results"]:
        assert item["values"]["score"] == pytest.approx(expected[int(item["entity_id"])], abs=1e-12)
    assert body["missing"] == ["777777"]

    too_many = httpx.post(url, json={"ids": list(range(6))})
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "too_many_ids"
    for bad in ({"ids": []}, {"ids": "1"}, {"id": [1]}, {"ids": ["a/b"]}, {"ids": [1], "x": 1}):
        r = httpx.post(url, json=bad)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request"), bad
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = httpx.post(url, json={"ids": ["x"]})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_entity_id")
    huge = httpx.post(url, content=b"[" + b"1," * 200_000 + b"1]")
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"


def test_models_health_metrics_and_openapi(scored: Scored, published, serve) -> None:
    url = serve().url
    models = httpx.get(f"{url}/v1/models").json()["models"]
    assert [(m["model"], m["as_of"], m["rows"], m["backend"]) for m in models] == [
        ("served", str(scored.dates[1]), 500, "embedded")
    ]
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    httpx.get(f"{url}/v1/models/served/predictions/1")
    httpx.get(f"{url}/v1/models/served/predictions/999999")
    metrics = httpx.get(f"{url}/metrics").text
    route = 'route="/v1/models/{model}/predictions/{entity_id}"'
    assert f'batch_serving_requests_total{{method="GET",{route},status="200"}} 1.0' in metrics
    assert f'batch_serving_requests_total{{method="GET",{route},status="404"}} 1.0' in metrics
    assert "batch_serving_request_duration_seconds_bucket" in metrics
    age = [line for line in metrics.splitlines() if line.startswith("batch_serving_snapshot_age")]
    assert age and 0 <= float(age[0].split()[-1]) < 600
    schema = httpx.get(f"{url}/openapi.json").json()
    assert {
        "/v1/models/{model}/predictions/{entity_id}",
        "/v1/models/{model}/predictions:batchGet",
    } <= set(schema["paths"])
    components = set(schema["components"]["schemas"])
    assert {
        "PredictionResponse",
        "BatchGetRequest",
        "BatchGetResponse",
        "ErrorResponse",
    } <= components


def test_health_is_503_until_a_snapshot_is_published(scored: Scored, tmp_path: Path, serve) -> None:
    server = serve()
    r = httpx.get(f"{server.url}/health")
    assert r.status_code == 503 and r.json()["error"]["code"] == "no_snapshot"
    assert httpx.get(f"{server.url}/v1/models/served/predictions/1").status_code == 404

    publish(scored.config(tmp_path / "serving"), scored.dates[0])

    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/health").status_code != 200:
        assert time.monotonic() < deadline, "snapshot never picked up"
        time.sleep(0.05)
    assert httpx.get(f"{server.url}/v1/models/served/predictions/1").status_code == 200


def test_bearer_auth(published, serve, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-a\n\ns3cret-b\n")
    url = serve(auth_tokens_file=tokens).url
    good = {"Authorization": "Bearer s3cret-b"}

    for path in (
        "/v1/models/served/predictions/1",
        "/v1/models/nope/predictions/1",
        "/v1/models",
        "/metrics",
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-a"}):
            r = httpx.get(url + path, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert r.json() == {
                "error": {"code": "unauthorized", "message": "missing or invalid bearer token"}
            }
            assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(url + "/v1/models/served/predictions:batchGet", json={"ids": [1]})
    assert r.status_code == 401
    assert httpx.get(url + "/v1/models/served/predictions/1", headers=good).status_code == 200
    assert httpx.get(url + "/health").status_code == 200  # probes need no token

    open_url = serve().url  # auth off: no header needed
    assert httpx.get(open_url + "/v1/models/served/predictions/1").status_code == 200


def test_hot_swap_under_concurrent_load_and_rollback(scored: Scored, tmp_path: Path, serve) -> None:
    """Every response during two swaps is complete and consistent with exactly one snapshot."""
    cfg = scored.config(tmp_path / "serving")
    old_day, new_day = scored.dates
    publish(cfg, old_day)
    server = serve()
    by_day = {str(d): scored.expected[d] for d in scored.dates}
    ids = list(range(0, 500, 7))
    errors: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()
    counts = [0]

    def hammer(batch: bool) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if batch:
                        r = client.post("/v1/models/served/predictions:batchGet", json={"ids": ids})
                        body = r.json()
                        got = {int(x["entity_id"]): x["values"]["score"] for x in body["results"]}
                    else:
                        entity = ids[i % len(ids)]
                        r = client.get(f"/v1/models/served/predictions/{entity}")
                        body = r.json()
                        got = {entity: body["values"]["score"]}
                except Exception as exc:  # any transport or shape error is a failure
                    errors.append(repr(exc))
                    continue
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text}")
                    continue
                expected = by_day[body["as_of"]]
                if any(abs(expected[k] - v) > 1e-12 for k, v in got.items()) or (
                    batch and (len(got) != len(ids) or body["missing"])
                ):
                    errors.append(f"inconsistent response for snapshot {body['snapshot']}")
                seen.add(body["as_of"])
                counts[0] += 1

    threads = [threading.Thread(target=hammer, args=(b,)) for b in (False, False, True, True)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    publish(cfg, new_day)
    _wait_for(server.url, str(new_day))
    time.sleep(0.5)
    rollback(cfg)
    _wait_for(server.url, str(old_day))
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()

    assert errors == []
    assert seen == {str(old_day), str(new_day)}
    assert counts[0] > 100
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'batch_serving_snapshot_swaps_total{model="served"} 3.0' in metrics
    assert "batch_serving_snapshots_mapped 1.0" in metrics  # old snapshots were released


def _wait_for(url: str, as_of: str) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/v1/models").json()["models"][0]["as_of"] != as_of:
        assert time.monotonic() < deadline, f"API never switched to {as_of}"
        time.sleep(0.02)


def test_map_valued_snapshot_is_served_through_arrow(tmp_path: Path, serve) -> None:
    """Multi-class outputs (a map column) take the Arrow reader; the JSON is an object."""
    import pyarrow as pa

    from batch_serving.serving.format import build_table, write_snapshot
    from batch_serving.serving.pointer import ServingLayout, write_pointer

    source = pa.table(
        {
            "customer_id": [2, 1],
            "probabilities": pa.array(
                [[("a", 0.25), ("b", 0.75)], [("a", 0.5), ("b", 0.5)]],
                pa.map_(pa.string(), pa.float64()),
            ),
            "predicted_label": ["b", "a"],
        }
    )
    layout = ServingLayout(tmp_path / "serving")
    table = build_table(source, ["customer_id"], ["probabilities", "predicted_label"])
    write_snapshot(
        table,
        layout.snapshot_dir("mc", "s1"),
        {
            "snapshot_id": "s1",
            "model": "mc",
            "model_version": 2,
            "run_date": "2026-11-22",
            "run_id": "r1",
            "published_at": "2026-11-22T00:00:00+00:00",
        },
    )
    write_pointer(layout, "mc", "s1", [])
    url = serve().url
    body = httpx.get(f"{url}/v1/models/mc/predictions/2").json()
    assert body["values"] == {"probabilities": {"a": 0.25, "b": 0.75}, "predicted_label": "b"}
    batch = httpx.post(f"{url}/v1/models/mc/predictions:batchGet", json={"ids": [1, 3]}).json()
    assert batch["results"] == [
        {
            "entity_id": "1",
            "values": {"probabilities": {"a": 0.5, "b": 0.5}, "predicted_label": "a"},
            "source": "snapshot",
        }
    ]
    assert batch["missing"] == ["3"]


def test_chunked_body_over_the_limit_is_refused_while_it_streams_in(published: JobConfig) -> None:
    """Issue #17.4: 10^7 ids (~130 MB) sent chunked (no Content-Length) get 413 once the limit
    is passed, not after the whole body was read and parsed; the API stays at its idle memory."""
    path = "/v1/models/served/predictions:batchGet"
    with ApiProcess(["--root", str(published.serving_root)]) as api:
        pieces = iter([b'{"ids": [1,', b" 2]}"])
        chunked = httpx.post(api.url + path, content=pieces, headers=JSON)
        assert chunked.status_code == 200  # a chunked body under the limit is served
        time.sleep(0.5)
        idle_mb = api.memory_mb()["rss_mb"]

        status, body, sent = _post_chunked(api.port, path, _ids_json(10**7))

        after = api.memory_mb()
        assert status == 413, body
        assert json.loads(body) == {
            "error": {"code": "body_too_large", "message": "request body over 164096 bytes"}
        }
        assert sent < 32 * 2**20  # answered mid-body: loopback socket buffers hold a few MiB
        # the peak too: a body read whole and parsed is freed soon after the answer
        assert after["rss_mb"] < 2 * idle_mb and after["peak_mb"] < 2 * idle_mb, (idle_mb, after)
        assert httpx.get(api.url + "/health").status_code == 200


def _ids_json(n: int, per_piece: int = 100_000) -> Iterator[bytes]:
    """``{"ids": [1000000000, ...]}`` in pieces (~12 bytes an id), never whole in memory."""
    yield b'{"ids": ['
    for start in range(0, n, per_piece):
        ids = ", ".join(str(10**9 + i) for i in range(start, min(start + per_piece, n)))
        yield (", " if start else "").encode() + ids.encode()
    yield b"]}"


def _post_chunked(
    port: int, path: str, pieces: Iterable[bytes], timeout_s: float = 120
) -> tuple[int, bytes, int]:
    """POST with ``Transfer-Encoding: chunked`` over a raw socket, sending until the server
    answers or closes; returns (status, response body, body bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        try:
            for piece in pieces:
                if select.select([sock], [], [], 0)[0]:
                    break  # an answer (or a close) before the end of the body
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed; what it sent before that is still readable
        status, body = _read_response(sock)
    return status, body, sent


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while True:
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        if length is not None and len(body) >= length:
            return int(head.split()[1]), body[:length]
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise AssertionError(f"connection closed before a complete response: {data[:300]!r}")
        data += chunk
