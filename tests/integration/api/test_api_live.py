"""Live fallback in the lookup API: ids removed from the snapshot are scored live from the
published feature snapshot, equal to the batch's scores; then cached; unknown ids stay 404;
``POST :score`` validates rows against the model's inputs (422 naming the field)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pytest
from conftest import Scored
from live import LiveServer

from batch_serving.api.app import create_app
from batch_serving.config import ServeSettings
from batch_serving.serving.format import KEY, SNAPSHOT_FILE, read_snapshot_manifest, write_snapshot
from batch_serving.serving.publish import publish

REMOVED = 6


def remove_ids(directory: Path, count: int) -> list[int]:
    """Rewrite the snapshot without its first ``count`` ids (as if the batch had missed them)."""
    with pa.memory_map(str(directory / SNAPSHOT_FILE)) as source:
        table = ipc.open_file(source).read_all()
    removed = table.column(KEY).slice(0, count).to_pylist()
    kept = table.filter(pc.invert(pc.is_in(table.column(KEY), pa.array(removed))))
    manifest = read_snapshot_manifest(directory).to_dict()
    write_snapshot(kept, directory, {k: v for k, v in manifest.items() if k != "numpy_columns"})
    return [int(i) for i in removed]


@pytest.fixture(scope="module")
def published(scored: Scored, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    root = tmp_path_factory.mktemp("live-serving")
    cfg = scored.config(root, features=True)
    done = publish(cfg, scored.dates[1])
    assert (done.path / "features" / SNAPSHOT_FILE).is_file()
    return root, remove_ids(done.path, REMOVED)


@pytest.mark.slow
def test_missing_ids_are_scored_live_then_cached(
    scored: Scored, published: tuple[Path, list[int]]
) -> None:
    root, removed = published
    expected = scored.expected[scored.dates[1]]
    settings = ServeSettings(snapshot_root=root, live_models={"served": "scored"})
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/served/predictions"
        present = next(i for i in expected if i not in removed)
        hit = httpx.get(f"{url}/{present}").json()
        assert hit["source"] == "snapshot"
        for entity in removed:
            first = httpx.get(f"{url}/{entity}")
            assert first.status_code == 200, first.text
            body = first.json()
            assert body["source"] == "live" and body["live_model"] == "models:/served/1"
            assert body["values"]["score"] == pytest.approx(expected[entity], abs=1e-9)
            again = httpx.get(f"{url}/{entity}").json()
            assert again["source"] == "cache" and again["values"] == body["values"]
        assert httpx.get(f"{url}/987654321").status_code == 404  # no features either
    # batchGet (a fresh app, empty cache): snapshot and live answers together, then the cache;
    # an id without features stays missing
    with LiveServer(create_app(settings)) as server:
        ids = [present, removed[0], 987654321, removed[1]]
        batch = httpx.post(f"{server.url}/v1/models/served/predictions:batchGet", json={"ids": ids})
        assert batch.status_code == 200, batch.text
        got = {r["entity_id"]: r for r in batch.json()["results"]}
        assert batch.json()["missing"] == ["987654321"]
        assert [got[str(i)]["source"] for i in (present, removed[0], removed[1])] == [
            "snapshot",
            "live",
            "live",
        ]
        for entity in (present, removed[0], removed[1]):
            assert got[str(entity)]["values"]["score"] == pytest.approx(expected[entity], abs=1e-9)
        again = httpx.post(
            f"{server.url}/v1/models/served/predictions:batchGet", json={"ids": [removed[1]]}
        ).json()
        assert again["results"][0]["source"] == "cache" and again["missing"] == []
        not_live = ServeSettings(snapshot_root=root)
    with LiveServer(create_app(not_live)) as server:  # opt-in: without it, still a 404
        missing = httpx.get(f"{server.url}/v1/models/served/predictions/{removed[0]}")
        assert missing.status_code == 404


@pytest.mark.slow
def test_score_rows_from_the_body(scored: Scored, published: tuple[Path, list[int]]) -> None:
    root, _ = published
    settings = ServeSettings(snapshot_root=root, live_models={"served": "scored"})
    features = root / "served" / "snapshots"
    (snapshot,) = [p for p in features.iterdir() if (p / "features").is_dir()]
    with pa.memory_map(str(snapshot / "features" / SNAPSHOT_FILE)) as source:
        rows = ipc.open_file(source).read_all().slice(0, 3).to_pylist()
    expected = scored.expected[scored.dates[1]]
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/served:score"
        body = [{k: v for k, v in r.items() if k != KEY} for r in rows]
        ok = httpx.post(url, json={"rows": body})
        assert ok.status_code == 200, ok.text
        scores = [r["values"]["score"] for r in ok.json()["results"]]
        assert scores == pytest.approx([expected[r[KEY]] for r in rows], abs=1e-9)

        missing = httpx.post(
            url, json={"rows": [{k: v for k, v in body[0].items() if k != "contract"}]}
        )
        assert missing.status_code == 422
        assert missing.json()["error"]["message"] == "rows[0].contract: missing feature"
        wrong = httpx.post(url, json={"rows": [body[0], {**body[1], "tenure_months": "ten"}]})
        assert wrong.status_code == 422
        assert "rows[1].tenure_months" in wrong.json()["error"]["message"]
        assert httpx.post(url, json={"rows": []}).status_code == 422
        other = httpx.post(f"{server.url}/v1/models/nope:score", json={"rows": body})
        assert other.status_code == 404
    assert json.dumps(scores)


@pytest.mark.slow
def test_redis_backend_reads_features_from_redis(
    scored: Scored, redis_url: str, tmp_path: Path
) -> None:
    import redis

    from batch_serving.serving.redis_store import bucket_of

    cfg = scored.config(
        tmp_path / "serving", features=True, backends=["redis"], redis_url=redis_url
    )
    done = publish(cfg, scored.dates[0])
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    meta = json.loads(client.get(f"bs:served:snap:{done.snapshot_id}:meta"))
    expected = scored.expected[scored.dates[0]]
    removed = sorted(expected)[:3]
    for entity in removed:  # the batch "missed" them: gone from the predictions in Redis
        key = str(entity)
        bucket = f"bs:served:snap:{done.snapshot_id}:b:{bucket_of(key, int(meta['buckets']))}"
        assert client.hdel(bucket, key) == 1
    shutil.rmtree(tmp_path / "serving")  # no files: the features must come from Redis
    settings = ServeSettings(
        snapshot_root=tmp_path / "none",
        backend="redis",
        redis_url=redis_url,
        models=("served",),
        live_models={"served": "scored"},
    )
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/served/predictions"
        for entity in removed:
            body = httpx.get(f"{url}/{entity}").json()
            assert body["source"] == "live", body
            assert body["values"]["score"] == pytest.approx(expected[entity], abs=1e-9)
            assert httpx.get(f"{url}/{entity}").json()["source"] == "cache"
        assert httpx.get(f"{url}/{sorted(expected)[5]}").json()["source"] == "snapshot"
        assert httpx.get(f"{url}/987654321").status_code == 404
        listed = httpx.get(f"{server.url}/v1/models").json()["models"]
        assert [m["model"] for m in listed] == ["served"]  # features are never served


@pytest.mark.slow
def test_live_with_the_onnx_export(scored: Scored, published: tuple[Path, list[int]]) -> None:
    from batch_serving.models.uris import model_config
    from batch_serving.runs.export_onnx import export_onnx

    root, removed = published
    day = scored.dates[1]
    partition = Path(scored.cfg.input.path) / f"ds={day}"
    done = export_onnx(
        model_config("models:/served@champion", scored.cfg.model.tracking_uri), partition
    )
    assert done.registered is not None
    tolerance = done.report.tolerance  # the gate's bound: what ONNX may differ by
    expected = scored.expected[day]
    settings = ServeSettings(
        snapshot_root=root, live_models={"served": "models:/served_onnx@champion"}
    )
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/served/predictions"
        for entity in removed[:3]:
            body = httpx.get(f"{url}/{entity}").json()
            assert body["source"] == "live" and body["live_model"] == done.registered
            assert body["values"]["score"] == pytest.approx(expected[entity], abs=tolerance)
