"""Redis backend: a real redis-server; same answers as the embedded backend, versioned keys."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import redis
from conftest import Scored
from live import LiveServer, free_port

from batch_serving.api.app import create_app
from batch_serving.config import ServeSettings
from batch_serving.errors import ServingStoreError
from batch_serving.serving.publish import publish, rollback


def test_redis_backend_answers_like_the_embedded_backend(
    scored: Scored, redis_url: str, tmp_path: Path
) -> None:
    cfg = scored.config(tmp_path / "serving", backends=["embedded", "redis"], redis_url=redis_url)
    publish(cfg, scored.dates[1])
    common = {"snapshot_root": cfg.serving_root, "models": ("served",), "poll_interval_s": 0.05}
    ids = [0, 1, 2, 250, 499, 500, 123456]

    with (
        LiveServer(create_app(ServeSettings(**common))) as embedded,
        LiveServer(
            create_app(ServeSettings(backend="redis", redis_url=redis_url, **common))
        ) as red,
    ):
        for entity in ids:
            a = httpx.get(f"{embedded.url}/v1/models/served/predictions/{entity}")
            b = httpx.get(f"{red.url}/v1/models/served/predictions/{entity}")
            assert (a.status_code, a.json()) == (b.status_code, b.json())
        batch = {"ids": ids}
        a = httpx.post(f"{embedded.url}/v1/models/served/predictions:batchGet", json=batch).json()
        b = httpx.post(f"{red.url}/v1/models/served/predictions:batchGet", json=batch).json()
        assert a == b and a["missing"] == ["500", "123456"]
        expected = scored.expected[scored.dates[1]]
        assert {int(x["entity_id"]): x["values"]["score"] for x in b["results"]} == pytest.approx(
            {i: expected[i] for i in ids if i in expected}, abs=1e-12
        )
        assert httpx.get(f"{red.url}/v1/models").json()["models"][0]["backend"] == "redis"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.keys("bs:served:snap:*:b:*") and not client.keys("bs:served:snap:*:mb:*")


def test_redis_pointer_flip_expiry_and_rollback(
    scored: Scored, redis_url: str, tmp_path: Path
) -> None:
    model = "served"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    cfg = scored.config(tmp_path / "serving", backends=["redis"], redis_url=redis_url, keep=2)
    first = publish(cfg, scored.dates[0])
    second = publish(cfg, scored.dates[1])
    assert client.get(f"bs:{model}:current") == second.snapshot_id
    old_meta = f"bs:{model}:snap:{first.snapshot_id}:meta"
    assert client.ttl(old_meta) == -1  # within keep: no expiry

    with LiveServer(
        create_app(ServeSettings(backend="redis", redis_url=redis_url, poll_interval_s=0.05))
    ) as server:
        assert _as_of(server.url) == str(scored.dates[1])
        back = rollback(cfg)
        assert back.snapshot_id == first.snapshot_id
        deadline = time.monotonic() + 10
        while _as_of(server.url) != str(scored.dates[0]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = httpx.get(f"{server.url}/v1/models/{model}/predictions/7").json()
        assert r["values"]["score"] == pytest.approx(scored.expected[scored.dates[0]][7], abs=1e-12)

    # keep=1: publishing again schedules every other version to expire (readers keep a grace TTL)
    cfg1 = scored.config(tmp_path / "serving", backends=["redis"], redis_url=redis_url, keep=1)
    publish(cfg1, scored.dates[1])
    assert client.get(f"bs:{model}:current") == second.snapshot_id
    assert 0 < client.ttl(old_meta) <= cfg1.publish.redis_expire_s
    assert 0 < client.ttl(f"bs:{model}:snap:{first.snapshot_id}:b:0") <= cfg1.publish.redis_expire_s
    assert client.ttl(f"bs:{model}:snap:{second.snapshot_id}:meta") == -1

    # republishing the replaced date within its grace TTL makes it current for good
    publish(cfg1, scored.dates[0], allow_older=True)
    assert client.get(f"bs:{model}:current") == first.snapshot_id
    assert client.ttl(old_meta) == -1
    assert client.ttl(f"bs:{model}:snap:{first.snapshot_id}:b:0") == -1


def test_unreachable_redis_is_a_clear_error(scored: Scored, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    cfg = scored.config(tmp_path / "serving", backends=["redis"], redis_url=url)
    with pytest.raises(ServingStoreError, match=f"Redis at {url} is unreachable") as info:
        publish(cfg, scored.dates[0])
    assert info.value.exit_code == 7


def _as_of(url: str, model: str = "served") -> str:
    """The served date of ``model`` (the session's Redis also holds other tests' models)."""
    models = httpx.get(f"{url}/v1/models").json()["models"]
    return next((str(m["as_of"]) for m in models if m["model"] == model), "")
