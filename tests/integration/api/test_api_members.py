"""Multi-model snapshots over real HTTP (issue #11): a real multi-model job is scored, published
and served; ``values`` holds the served score and action, member structs come only on request
and equal the struct values of the committed Parquet partition."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import redis
from conftest import RUN_DATE, Scored, customers
from live import LiveServer
from test_multi_model import Models

from batch_serving.api.app import create_app
from batch_serving.api.fastpath import _fast_get
from batch_serving.config import JobConfig, ServeSettings
from batch_serving.runs.job import run_score
from batch_serving.serving.publish import publish
from batch_serving.serving.readers import Snapshot, open_snapshot
from batch_serving.serving.redis_store import RedisPublisher

MEMBERS = ["champion", "challenger", "tenure_adj"]
IDS = [0, 1, 2, 3, 50, 101, 150, 199, 200, 250, 299]  # > 8 ids: the reader's take() path


@dataclass(frozen=True)
class MultiJob:
    """One committed multi-model partition, its rows by id, and the job config."""

    cfg: JobConfig
    models: Models
    rows: dict[int, dict[str, Any]]  # customer_id -> the partition's row (structs as dicts)
    features: Any  # the input rows, for the champion oracle

    @property
    def model(self) -> str:
        return self.cfg.model.name


@pytest.fixture
def multi(spark, register, warehouse, job_config, tmp_path: Path) -> MultiJob:
    features = customers(300)
    warehouse(features)
    models = Models(register)
    cfg = models.config(job_config, publish={"root": str(tmp_path / "serving")})
    result = run_score(spark, cfg, RUN_DATE)
    table = pq.read_table(result.committed.path)
    assert {"score", "action", *MEMBERS} <= set(table.column_names)
    rows = {r["customer_id"]: r for r in table.to_pylist()}
    return MultiJob(cfg=cfg, models=models, rows=rows, features=features)


def _served(row: dict[str, Any]) -> dict[str, Any]:
    return {"score": row["score"], "action": row["action"]}


def _members(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in MEMBERS}


def test_served_columns_by_default_members_on_request(multi: MultiJob) -> None:
    done = publish(multi.cfg, RUN_DATE)
    snap = open_snapshot(done.path)
    assert isinstance(snap, Snapshot) and snap.member_columns == tuple(MEMBERS)
    settings = ServeSettings(snapshot_root=multi.cfg.serving_root, poll_interval_s=0.05)
    champion = multi.models.oracle(multi.features.set_index("customer_id").loc[IDS].reset_index())

    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/{multi.model}/predictions"
        for i, entity in enumerate(IDS):
            row = multi.rows[entity]
            plain = httpx.get(f"{url}/{entity}")
            assert plain.status_code == 200
            assert plain.json()["values"] == _served(row) and "members" not in plain.json()
            for query in ("members=true", "members=false"):
                r = httpx.get(f"{url}/{entity}?{query}")
                assert r.status_code == 200 and r.json()["values"] == _served(row)
            body = httpx.get(f"{url}/{entity}", params={"members": "true"}).json()
            assert body["members"] == _members(row)
            # the member score is the champion model's own output, not just the file's
            assert body["members"]["champion"]["score"] == pytest.approx(
                champion["score"][i], abs=1e-12
            )
            assert body["members"]["challenger"]["action"] in {"allow", "review", "block"}
            assert body["members"]["champion"]["model_version"] == multi.models.v1
            assert body["members"]["challenger"]["model_version"] == multi.models.v2

        batch_url = f"{url}:batchGet"
        asked = [*IDS, 777777]
        with_members = httpx.post(batch_url, json={"ids": asked, "members": True}).json()
        assert with_members["missing"] == ["777777"]
        assert [int(x["entity_id"]) for x in with_members["results"]] == IDS
        for item in with_members["results"]:
            row = multi.rows[int(item["entity_id"])]
            assert item["values"] == _served(row) and item["members"] == _members(row)
        for few in ({"ids": IDS[:3], "members": True}, {"ids": IDS[:3]}):  # the scalar path
            results = httpx.post(batch_url, json=few).json()["results"]
            assert [x["values"] for x in results] == [_served(multi.rows[i]) for i in IDS[:3]]
            assert all(("members" in x) == ("members" in few) for x in results)
        plain_batch = httpx.post(batch_url, json={"ids": IDS}).json()
        assert all(set(x) == {"entity_id", "values", "source"} for x in plain_batch["results"])

        listed = httpx.get(f"{server.url}/v1/models").json()["models"]
        assert [(m["model"], m["members"]) for m in listed] == [(multi.model, MEMBERS)]


def test_redis_serves_members_like_the_embedded_store(multi: MultiJob, redis_url: str) -> None:
    data = multi.cfg.model_dump(mode="json")
    data["publish"] = {**data["publish"], "backends": ["embedded", "redis"], "redis_url": redis_url}
    cfg = JobConfig.model_validate(data)
    done = publish(cfg, RUN_DATE)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    member_hashes = f"bs:{multi.model}:snap:{done.snapshot_id}:mb:*"
    assert client.keys(member_hashes)
    common = {"snapshot_root": cfg.serving_root, "poll_interval_s": 0.05}

    with (
        LiveServer(create_app(ServeSettings(**common))) as embedded,
        LiveServer(
            create_app(ServeSettings(backend="redis", redis_url=redis_url, **common))
        ) as red,
    ):
        path = f"/v1/models/{multi.model}/predictions"
        for query in ("", "?members=true"):
            for entity in (IDS[0], IDS[-1], 999999):
                a = httpx.get(f"{embedded.url}{path}/{entity}{query}")
                b = httpx.get(f"{red.url}{path}/{entity}{query}")
                assert (a.status_code, a.json()) == (b.status_code, b.json())
        one = httpx.get(f"{red.url}{path}/{IDS[1]}?members=true").json()
        assert one["members"] == _members(multi.rows[IDS[1]])
        assert one["values"] == _served(multi.rows[IDS[1]])
        for members in (False, True):
            batch = {"ids": [*IDS, 999999], "members": members}
            a = httpx.post(f"{embedded.url}{path}:batchGet", json=batch).json()
            b = httpx.post(f"{red.url}{path}:batchGet", json=batch).json()
            assert a == b and b["missing"] == ["999999"]
            assert all(("members" in x) == members for x in b["results"])

    with RedisPublisher(redis_url) as pub:  # an expired version's member hashes go too
        pub._expire(multi.model, done.snapshot_id, 60)
    assert all(0 < client.ttl(k) <= 60 for k in client.keys(member_hashes))


def test_single_model_snapshot_answers_empty_members(scored: Scored, tmp_path: Path) -> None:
    """A single-model snapshot keeps its numpy-mapped reader; members=true adds `{}`."""
    from batch_serving.serving.readers import MappedSnapshot

    done = publish(scored.config(tmp_path / "serving"), scored.dates[1])
    assert isinstance(open_snapshot(done.path), MappedSnapshot)
    settings = ServeSettings(snapshot_root=tmp_path / "serving", poll_interval_s=0.05)
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/served/predictions"
        body = httpx.get(f"{url}/7?members=true").json()
        assert body["members"] == {}
        assert body["values"] == {"score": pytest.approx(scored.expected[scored.dates[1]][7])}
        through_fastapi = httpx.get(f"{url}/7?members=1")  # not the fast path's: same answer
        assert through_fastapi.status_code == 200 and through_fastapi.json() == body
        batch = httpx.post(f"{url}:batchGet", json={"ids": [7], "members": True}).json()
        assert batch["results"][0]["members"] == {}
        assert httpx.get(f"{url}/7?members=maybe").status_code == 422


def test_bad_query_parameters_and_member_flags_are_422(scored: Scored, tmp_path: Path) -> None:
    publish(scored.config(tmp_path / "serving"), scored.dates[1])
    settings = ServeSettings(snapshot_root=tmp_path / "serving", poll_interval_s=0.05)
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/served/predictions"
        for query, named in (
            ("members=maybe", "members"),
            ("foo=1", "foo"),
            ("members=true&foo=1", "foo"),
            ("members=", "members"),
        ):
            r = httpx.get(f"{url}/1?{query}")
            assert r.status_code == 422, query
            error = r.json()["error"]
            assert error["code"] == "invalid_request" and named in error["message"], query
        for bad in ({"ids": [1], "members": "maybe"}, {"ids": [1], "members": "true"}):
            r = httpx.post(f"{url}:batchGet", json=bad)
            assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request"), bad

        schema = httpx.get(f"{server.url}/openapi.json").json()
        get = schema["paths"]["/v1/models/{model}/predictions/{entity_id}"]["get"]
        (param,) = [p for p in get["parameters"] if p["name"] == "members"]
        assert param["in"] == "query" and param["schema"]["type"] == "boolean"
        components = schema["components"]["schemas"]
        assert "members" in components["PredictionResponse"]["properties"]
        assert "members" in components["Prediction"]["properties"]
        assert components["BatchGetRequest"]["properties"]["members"]["type"] == "boolean"


def test_fast_path_takes_the_member_flag_and_leaves_the_rest_to_fastapi() -> None:
    def scope(query: bytes, method: str = "GET") -> dict[str, Any]:
        return {"method": method, "path": "/v1/models/m/predictions/42", "query_string": query}

    assert _fast_get(scope(b"")) == ("m", "42", False)
    assert _fast_get(scope(b"members=true")) == ("m", "42", True)
    assert _fast_get(scope(b"members=false")) == ("m", "42", False)
    for other in (b"members=maybe", b"foo=1", b"members=1", b"members=true&members=true"):
        assert _fast_get(scope(other)) is None, other  # FastAPI validates these
    assert _fast_get(scope(b"members=true", "POST")) is None
