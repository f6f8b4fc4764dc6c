"""Asynchronous scoring requests over real HTTP, answered by a real stream.

POST rows -> 202 and a request id (the rows land as a file in the stream's landing dir);
GET -> 202 while pending, 200 with the scores once the stream ran; 422 for a bad row (naming
the field) before anything is queued; 404 for an unknown id or a model without a stream.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import builders
import httpx
import numpy as np
import yaml
from conftest import customers, labelled
from live import LiveServer
from pyspark.sql import SparkSession
from test_stream import DDL, RULES

from batch_serving.api import create_app
from batch_serving.config import JobConfig, load_serve_settings
from batch_serving.stream.runner import run_stream


def test_request_round_trip_through_the_stream(
    spark: SparkSession,
    job_config: Callable[..., JobConfig],
    register: Callable[..., tuple[str, int]],
    tmp_path: Path,
) -> None:
    model, oracle = builders.logreg_pipeline(labelled(800))
    name, _ = register(model, customers(50)[builders.FEATURES])
    landing = tmp_path / "landing"
    cfg = job_config(
        name, stream={"path": str(landing), "columns": DDL, "trigger_seconds": 0.2}, rules=RULES
    )
    job_file = tmp_path / "stream.yaml"
    job_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    (tmp_path / "serving").mkdir()
    settings = load_serve_settings(
        snapshot_root=str(tmp_path / "serving"), stream_jobs=[str(job_file)]
    )
    rows = customers(3, seed=21)
    records = rows.to_dict(orient="records")
    route = f"/v1/models/{name}/scoring-requests"

    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url) as http:
        bad = [records[0], {**records[1], "tenure_months": "ten"}]
        got = http.post(route, json={"rows": bad})
        assert got.status_code == 422
        assert "rows[1].tenure_months" in got.json()["error"]["message"]
        missing = {k: v for k, v in records[0].items() if k != "contract"}
        got = http.post(route, json={"rows": [missing]})
        assert got.status_code == 422 and "rows[0].contract" in got.json()["error"]["message"]
        assert not landing.exists() or not list(landing.iterdir())  # nothing was queued
        assert (
            http.post("/v1/models/other/scoring-requests", json={"rows": records}).status_code
            == 404
        )
        assert http.get(f"{route}/{'0' * 32}").status_code == 404

        accepted = http.post(route, json={"rows": records})
        assert accepted.status_code == 202
        request_id = accepted.json()["request_id"]
        assert accepted.headers["location"] == f"{route}/{request_id}"
        pending = http.get(f"{route}/{request_id}")
        assert pending.status_code == 202 and pending.json()["status"] == "pending"

        run_stream(spark, cfg, available_now=True)

        done = http.get(f"{route}/{request_id}")
        assert done.status_code == 200
        answer = done.json()
    assert answer["status"] == "done" and answer["quarantined"] == []
    scored = sorted(answer["predictions"], key=lambda r: r["customer_id"])
    assert [r["customer_id"] for r in scored] == rows.customer_id.tolist()
    scores = np.array([r["score"] for r in scored])
    assert np.allclose(scores, oracle(rows)["score"], rtol=0, atol=1e-9)
    assert [r["action"] for r in scored] == ["block" if s >= 0.5 else "allow" for s in scores]
