"""Issue #31 items 6 and 9: the limits and error edges of the two row endpoints.

``POST /v1/models/{m}:score`` (live scoring) and ``POST .../scoring-requests`` (asynchronous)
take feature rows: their body limit follows from ``max_batch`` and the model's fields, not from
the id-list limit of batchGet (which refused 200 rows of 30 features as over 164096 bytes), and
is still enforced while the body streams in. Unknown fields, unknown models and bodies that are
not JSON get a 4xx naming what is wrong.

No Spark: a 30-feature model is registered in MLflow and its snapshot (predictions + features)
is written by hand; the stream job only has to be a valid job file (nothing is streamed).
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from conftest import register_model
from live import LiveServer
from sklearn.linear_model import LogisticRegression

from batch_serving.api.app import create_app
from batch_serving.config import JobConfig, ServeSettings
from batch_serving.serving.format import build_table, write_snapshot
from batch_serving.serving.pointer import ServingLayout, write_pointer

FEATURES = [f"f{i:02d}" for i in range(30)]
ID = "customer_id"
# max_batch (1000) x (fields x row_field_bytes (128) + 16) + 4096
SCORE_LIMIT = 1000 * (30 * 128 + 16) + 4096  # 30 features
REQUEST_LIMIT = 1000 * (31 * 128 + 16) + 4096  # the stream's 31 columns (id + features)
OLD_LIMIT = 1000 * 160 + 4096  # the id-list limit the rows used to get


class Served:
    """The running API and what the tests compare its answers with."""

    def __init__(self, server: LiveServer, model: str, oracle: LogisticRegression) -> None:
        self.server, self.model, self.oracle = server, model, oracle
        self.score = f"{server.url}/v1/models/{model}:score"
        self.requests = f"{server.url}/v1/models/{model}/scoring-requests"


@pytest.fixture(scope="module")
def served(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("limits")
    frame = pd.DataFrame(np.random.default_rng(7).normal(size=(200, 30)), columns=FEATURES)
    oracle = LogisticRegression().fit(frame, (frame.f00 + frame.f01 > 0).astype(int))
    model, version = register_model(tracking_uri, oracle, frame)
    layout = ServingLayout(root / "serving")
    _publish(layout, model, version, tracking_uri, features=frame)
    _publish(layout, "plain", 1, tracking_uri, features=None)  # served, not live
    settings = ServeSettings(
        snapshot_root=root / "serving",
        live_models={model: "scored"},
        stream_jobs=(_stream_job(root, model, tracking_uri),),
    )
    with LiveServer(create_app(settings)) as server:
        yield Served(server, model, oracle)


def _publish(
    layout: ServingLayout, model: str, version: int, tracking: str, features: pd.DataFrame | None
) -> None:
    """A current snapshot of ids 1-3 and, for a live model, its feature snapshot."""
    header: dict[str, Any] = {
        "snapshot_id": "s1",
        "model": model,
        "model_version": version,
        "model_uri": f"models:/{model}/{version}",
        "run_date": "2026-11-22",
        "run_id": "r1",
        "entity_columns": [ID],
        "published_at": "2026-11-22T00:00:00+00:00",
    }
    directory = layout.snapshot_dir(model, "s1")
    scores = pa.table({ID: [1, 2, 3], "score": [0.1, 0.2, 0.3]})
    write_snapshot(build_table(scores, [ID], ["score"]), directory, header)
    if features is not None:
        table = pa.Table.from_pandas(features.assign(**{ID: range(len(features))}))
        feature_header = {**header, "snapshot_id": "f1", "tracking_uri": tracking}
        write_snapshot(build_table(table, [ID], FEATURES), directory / "features", feature_header)
    write_pointer(layout, model, "s1", [])


def _stream_job(root: Path, model: str, tracking: str) -> Path:
    """A job file whose stream lands scoring requests for ``model`` (31 columns)."""
    columns = ", ".join([f"{ID} BIGINT", *(f"{f} DOUBLE" for f in FEATURES)])
    cfg = JobConfig.model_validate(
        {
            "job": "limits",
            "model": {"name": model, "alias": "champion", "tracking_uri": tracking},
            "input": {"path": str(root / "input")},
            "entity_columns": [ID],
            "output": {"root": str(root / "out")},
            "catalog": {"enabled": False},
            "tracking": {"log_runs": False},
            "stream": {"path": str(root / "landing"), "columns": columns},
        }
    )
    path = root / "stream.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def _rows(count: int, seed: int = 11, with_id: bool = False) -> list[dict[str, Any]]:
    values = np.random.default_rng(seed).normal(size=(count, 30))
    rows = [dict(zip(FEATURES, map(float, row), strict=True)) for row in values]
    return [{ID: i, **r} for i, r in enumerate(rows)] if with_id else rows


def _error(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


# --- item 6: row bodies get a limit of their own ----------------------------------------------


def test_200_rows_of_30_features_are_accepted_on_both_endpoints(served: Served) -> None:
    rows = _rows(200)
    body = json.dumps({"rows": rows}).encode()
    assert len(body) > OLD_LIMIT  # refused with 413 before the fix
    json_type = {"content-type": "application/json"}

    scored = httpx.post(served.score, content=body, headers=json_type, timeout=60)
    assert scored.status_code == 200, scored.text
    scores = [r["values"]["score"] for r in scored.json()["results"]]
    want = served.oracle.predict_proba(pd.DataFrame(rows, columns=FEATURES))[:, 1]
    assert scores == pytest.approx(want.tolist(), abs=1e-12)

    body = json.dumps({"rows": _rows(200, with_id=True)}).encode()
    assert len(body) > OLD_LIMIT
    accepted = httpx.post(served.requests, content=body, headers=json_type, timeout=60)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["rows"] == 200


def test_max_batch_plus_one_rows_are_refused_naming_the_row_limit(served: Served) -> None:
    too_many = httpx.post(served.score, json={"rows": _rows(1001)}, timeout=60)
    assert _error(too_many) == (
        413,
        "too_many_rows",
        "1001 rows posted (at most 1000 rows of 30 features)",
    )
    rows = _rows(1001, with_id=True)
    too_many = httpx.post(served.requests, json={"rows": rows}, timeout=60)
    assert _error(too_many) == (
        413,
        "too_many_rows",
        "1001 rows posted (at most 1000 rows of 31 columns)",
    )


@pytest.mark.parametrize(
    ("target", "limit", "allowed"),
    [
        ("score", SCORE_LIMIT, "at most 1000 rows of 30 features"),
        ("requests", REQUEST_LIMIT, "at most 1000 rows of 31 columns"),
    ],
)
def test_a_row_body_streaming_over_the_limit_is_cut_off(
    served: Served, target: str, limit: int, allowed: str
) -> None:
    """~48 MiB of rows sent chunked (no Content-Length): 413 naming the row limit once the
    limit is passed, long before the whole body was sent; the API still answers after."""
    path = httpx.URL(getattr(served, target)).path
    status, body, sent = _post(served.server.port, path, _endless_rows(48 * 2**20))
    assert status == 413, body
    assert json.loads(body)["error"] == {
        "code": "body_too_large",
        "message": f"request body over {limit} bytes ({allowed})",
    }
    assert limit < sent < 24 * 2**20  # stopped mid-body (socket buffers hold a few MiB)
    assert httpx.get(f"{served.server.url}/health").status_code == 200


def test_a_declared_content_length_over_the_row_limit_is_refused_unread(served: Served) -> None:
    path = httpx.URL(served.score).path
    status, body, sent = _post(served.server.port, path, [], declared=SCORE_LIMIT + 1)
    assert (status, sent) == (413, 0), body
    message = json.loads(body)["error"]["message"]
    assert message == f"request body over {SCORE_LIMIT} bytes (at most 1000 rows of 30 features)"
    # batchGet keeps its id-list limit
    batch = httpx.URL(served.score.replace(":score", "/predictions:batchGet")).path
    status, body, _ = _post(served.server.port, batch, [], declared=OLD_LIMIT + 1)
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large", body


# --- item 9: unknown fields, unknown models, bodies that are not JSON ------------------------


def test_score_rejects_unknown_fields_naming_them(served: Served) -> None:
    rows = _rows(2)
    rows[1]["f_30"] = 1.0
    message = _error(httpx.post(served.score, json={"rows": rows}, timeout=60))
    assert message == (
        422,
        "invalid_request",
        f"rows[1].f_30: unknown field; the model's features are {FEATURES}",
    )
    extra = httpx.post(served.score, json={"rows": _rows(1), "members": True}, timeout=60)
    assert _error(extra)[:2] == (422, "invalid_request")
    assert "body.members" in _error(extra)[2]
    extra = httpx.post(served.requests, json={"rows": _rows(1, with_id=True), "priority": 1})
    assert _error(extra)[:2] == (422, "invalid_request")
    assert "body.priority" in _error(extra)[2]


def test_score_answers_model_not_found_for_an_unknown_model(served: Served) -> None:
    url = served.server.url
    unknown = httpx.post(f"{url}/v1/models/nope:score", json={"rows": _rows(1)})
    assert _error(unknown) == (404, "model_not_found", "model 'nope' is not served here")
    not_live = httpx.post(f"{url}/v1/models/plain:score", json={"rows": _rows(1)})
    assert _error(not_live) == (
        404,
        "live_not_enabled",
        "live scoring is not enabled for 'plain'",
    )
    # refused before the body is read: a huge declared body still gets the 404, not a 413
    status, body, _ = _post(served.server.port, "/v1/models/nope:score", [], declared=10**9)
    assert (status, json.loads(body)["error"]["code"]) == (404, "model_not_found")


@pytest.mark.parametrize("target", ["score", "requests", "batch_get"])
def test_a_body_that_is_not_json_gets_a_clear_message(served: Served, target: str) -> None:
    url = {
        "score": served.score,
        "requests": served.requests,
        "batch_get": f"{served.server.url}/v1/models/{served.model}/predictions:batchGet",
    }[target]
    headers = {"content-type": "application/json"}
    bad = httpx.post(url, content=b'{"rows": [{"f00": 1.2345} {"f00": 2.0}]}', headers=headers)
    assert _error(bad) == (
        422,
        "invalid_json",
        "request body is not valid JSON: Expecting ',' delimiter at line 1 column 27",
    )
    two_lines = httpx.post(url, content=b'{"rows": [\n  {"f00": 1.0,]}', headers=headers)
    assert _error(two_lines)[2] == (
        "request body is not valid JSON: Expecting property name enclosed in double quotes "
        "at line 2 column 15"
    )


# --- raw HTTP: bodies without a Content-Length, and a declared one never sent ---------------


def _endless_rows(total: int) -> Iterator[bytes]:
    """``{"rows": [...]}`` of about ``total`` bytes in ~64 KiB pieces, never whole in memory."""
    row = json.dumps(_rows(1)[0]).encode()
    per_piece = max(1, 2**16 // (len(row) + 2))
    piece = b", ".join([row] * per_piece)
    yield b'{"rows": [' + piece
    for _ in range(total // len(piece)):
        yield b", " + piece
    yield b"]}"


def _post(
    port: int, path: str, pieces: Iterable[bytes], declared: int | None = None
) -> tuple[int, bytes, int]:
    """POST over a raw socket: chunked, or with a ``Content-Length`` of ``declared`` bytes
    (none sent); sends until the server answers. Returns (status, body, body bytes sent)."""
    framing = f"Content-Length: {declared}" if declared else "Transfer-Encoding: chunked"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n"
        )
        sock.sendall(head.encode())
        try:
            for piece in pieces:
                if select.select([sock], [], [], 0)[0]:
                    break  # an answer (or a close) before the end of the body
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            else:
                if not declared:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed; what it sent before that is still readable
        return (*_response(sock), sent)


def _response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), body[:length]
