"""Live fallback for multi-model jobs: a real batch run (champion + shadow challenger + a
pipeline stage reading champion.score + a weighted ensemble + rules) is published with its
features, ids are removed from the served snapshot, and the API scores them live over real
HTTP. Oracle: the batch's own predictions rows for those ids (served score, action and every
member's struct), and for the pipeline stage also the in-process models. The champion alias is
moved after the run: live answers must still come from the versions the snapshot pinned."""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import builders
import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import RUN_DATE, TEST_SPARK_CONF, customers, labelled, register_model
from live import LiveServer
from pyspark.sql import SparkSession
from test_api_live import remove_ids
from test_multi_model import RULES, Models

from batch_serving import sample_data
from batch_serving.api.app import create_app
from batch_serving.config import JobConfig, ServeSettings
from batch_serving.runs.job import run_score
from batch_serving.serving.format import (
    KEY,
    SNAPSHOT_FILE,
    read_snapshot_manifest,
    write_snapshot,
)
from batch_serving.serving.publish import publish

REMOVED = 8
MEMBERS = ("champion", "challenger", "tenure_adj")
UNKNOWN = 987654321
NEW_KEYS = ("members", "ensemble_config", "champion_features")


@dataclass(frozen=True)
class Published:
    models: Models
    cfg: JobConfig
    root: Path
    model: str
    removed: list[int]
    batch: dict[int, dict[str, Any]]  # customer_id -> the batch's predictions row
    features: dict[int, dict[str, Any]]  # customer_id -> the published feature row


@pytest.fixture(scope="module")
def published(
    spark: SparkSession, tracking_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    root = tmp_path_factory.mktemp("live-members")
    models = Models(functools.partial(register_model, tracking_uri))
    rows = customers(240, seed=21)
    sample_data.write_partition(root / "warehouse", RUN_DATE, rows, files=2)
    cfg = JobConfig.model_validate(
        {
            "job": "live_members",
            "model": {"name": models.name, "alias": "champion", "tracking_uri": tracking_uri},
            "members": {
                "challenger": {"name": models.name, "alias": "challenger", "role": "shadow"},
                "tenure_adj": {
                    "name": models.stage_name,
                    "alias": "champion",
                    "inputs": ["champion.score", "tenure_months"],
                },
            },
            "ensemble": {
                "members": ["champion", "tenure_adj"],
                "method": "weighted_mean",
                "weights": [0.7, 0.3],
            },
            "rules": RULES,
            "input": {"path": str(root / "warehouse")},
            "entity_columns": [sample_data.ENTITY],
            "output": {"root": str(root / "out")},
            "spark": {"master": "local[2]", "conf": TEST_SPARK_CONF},
            "catalog": {"enabled": False},
            "tracking": {"log_runs": False},
            "publish": {"root": str(root / "serving"), "features": True},
        }
    )
    result = run_score(spark, cfg, RUN_DATE)
    done = publish(cfg, RUN_DATE)
    batch_rows = pq.read_table(result.committed.path).to_pylist()
    with pa.memory_map(str(done.path / "features" / SNAPSHOT_FILE)) as source:
        feature_rows = ipc.open_file(source).read_all().to_pylist()
    removed = remove_ids(done.path, REMOVED)
    # the registry moves on after the run: new champion and challenger versions (other
    # weights) must NOT be used live; the snapshot pinned the versions it was scored with
    for seed, alias in ((5, "champion"), (6, "challenger")):
        other, _ = builders.logreg_pipeline(labelled(300, seed=seed))
        sample = customers(100)[builders.FEATURES]
        register_model(tracking_uri, other, sample, name=models.name, alias=alias)
    return Published(
        models=models,
        cfg=cfg,
        root=root / "serving",
        model=models.name,
        removed=removed,
        batch={r[sample_data.ENTITY]: r for r in batch_rows},
        features={r[KEY]: r for r in feature_rows},
    )


def assert_batch_answer(answer: dict[str, Any], row: dict[str, Any]) -> None:
    """Served columns and every member's struct equal the batch's row (scores to 1e-12)."""
    assert answer["values"]["action"] == row["action"]
    assert abs(answer["values"]["score"] - row["score"]) <= 1e-12
    assert set(answer["values"]) == {"score", "action"}
    assert set(answer["members"]) == set(MEMBERS)
    for key in MEMBERS:
        got, want = answer["members"][key], row[key]
        assert set(got) == set(want), key
        assert abs(got["score"] - want["score"]) <= 1e-12, key
        assert {k: v for k, v in got.items() if k != "score"} == {
            k: v for k, v in want.items() if k != "score"
        }, key


@pytest.mark.slow
def test_multi_model_ids_are_scored_live_like_the_batch(published: Published) -> None:
    p = published
    settings = ServeSettings(snapshot_root=p.root, live_models={p.model: "scored"})
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/{p.model}/predictions"
        present = next(i for i in p.batch if i not in p.removed)
        snap = httpx.get(f"{url}/{present}", params={"members": "true"}).json()
        assert snap["source"] == "snapshot"
        assert_batch_answer(snap, p.batch[present])  # the oracle itself, as served
        for entity in p.removed:
            answer = httpx.get(f"{url}/{entity}", params={"members": "true"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["source"] == "live"
            assert body["live_model"] == f"models:/{p.model}/{p.models.v1}"  # pinned, not @champion
            assert body["model_version"] == p.models.v1
            assert_batch_answer(body, p.batch[entity])
            assert body["members"]["challenger"]["model_version"] == p.models.v2
            plain = httpx.get(f"{url}/{entity}").json()  # cached; members only when asked
            assert plain["source"] == "cache" and "members" not in plain
            assert plain["values"] == body["values"]
        assert {p.batch[i]["action"] for i in p.batch} >= {"allow", "review"}
        assert httpx.get(f"{url}/{UNKNOWN}").status_code == 404


@pytest.mark.slow
def test_pipeline_member_is_scored_live_like_the_in_process_models(published: Published) -> None:
    """tenure_adj reads champion.score: its live score equals the two models chained in
    process on the published features (and the batch's struct)."""
    p = published
    frame = pd.DataFrame([p.features[i] for i in p.removed])
    stage = p.models.stage_oracle(frame)["score"]
    champion = p.models.oracle(frame)["score"]
    settings = ServeSettings(snapshot_root=p.root, live_models={p.model: "scored"})
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/{p.model}/predictions"
        for entity, want_stage, want_champion in zip(p.removed, stage, champion, strict=True):
            body = httpx.get(f"{url}/{entity}", params={"members": "true"}).json()
            assert body["source"] == "live", body
            members = body["members"]
            assert abs(members["tenure_adj"]["score"] - want_stage) <= 1e-12
            assert abs(members["champion"]["score"] - want_champion) <= 1e-12
            served = 0.7 * want_champion + 0.3 * want_stage
            assert abs(body["values"]["score"] - served) <= 1e-12
        # rows from the body: the same plan (all members) scores them
        rows = [{k: v for k, v in p.features[i].items() if k != KEY} for i in p.removed[:3]]
        scored = httpx.post(f"{server.url}/v1/models/{p.model}:score", json={"rows": rows})
        assert scored.status_code == 200, scored.text
        for result, entity in zip(scored.json()["results"], p.removed[:3], strict=True):
            assert_batch_answer(result, p.batch[entity])
        no_tenure = {k: v for k, v in rows[0].items() if k != "tenure_months"}
        bad = httpx.post(f"{server.url}/v1/models/{p.model}:score", json={"rows": [no_tenure]})
        assert bad.status_code == 422
        assert bad.json()["error"]["message"] == "rows[0].tenure_months: missing feature"


@pytest.mark.slow
def test_batch_get_fill_scores_missing_ids_of_a_multi_model_job(published: Published) -> None:
    p = published
    settings = ServeSettings(snapshot_root=p.root, live_models={p.model: "scored"})
    present = next(i for i in p.batch if i not in p.removed)
    ids = [present, p.removed[0], UNKNOWN, p.removed[1], p.removed[2]]
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/{p.model}/predictions:batchGet"
        got = httpx.post(url, json={"ids": ids, "members": True})
        assert got.status_code == 200, got.text
        assert got.json()["missing"] == [str(UNKNOWN)]
        results = {r["entity_id"]: r for r in got.json()["results"]}
        assert [results[str(i)]["source"] for i in (present, *p.removed[:3])] == [
            "snapshot",
            "live",
            "live",
            "live",
        ]
        for entity in (present, *p.removed[:3]):
            assert_batch_answer(results[str(entity)], p.batch[entity])
        again = httpx.post(url, json={"ids": [p.removed[1]]}).json()
        (cached,) = again["results"]
        assert cached["source"] == "cache" and "members" not in cached
        assert cached["values"]["action"] == p.batch[p.removed[1]]["action"]


@pytest.mark.slow
def test_feature_snapshot_without_pinned_members_is_refused(
    published: Published, tmp_path: Path
) -> None:
    """A feature snapshot published before members were pinned cannot reproduce the batch:
    its missing ids are a 404 live_unsupported, never an answer from re-resolved aliases."""
    root = tmp_path / "serving"
    shutil.copytree(published.root, root)
    (features,) = root.glob(f"{published.model}/snapshots/*/features")
    with pa.memory_map(str(features / SNAPSHOT_FILE)) as source:
        table = ipc.open_file(source).read_all()
    manifest = read_snapshot_manifest(features).to_dict()
    old = {k: v for k, v in manifest.items() if k not in ("numpy_columns", *NEW_KEYS)}
    shutil.rmtree(features)
    write_snapshot(table, features, old)
    settings = ServeSettings(snapshot_root=root, live_models={published.model: "scored"})
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/{published.model}/predictions"
        refused = httpx.get(f"{url}/{published.removed[0]}")
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "live_unsupported"


@pytest.mark.slow
def test_redis_backend_scores_multi_model_ids_live(
    published: Published, redis_url: str, tmp_path: Path
) -> None:
    """The pinned members travel in the Redis feature manifest: with no files at all, missing
    ids of the multi-model job are scored live like the batch."""
    import redis

    from batch_serving.serving.redis_store import bucket_of

    p = published
    data = p.cfg.model_dump(mode="json")
    data["publish"] = {
        **data["publish"],
        "root": str(tmp_path / "serving"),
        "backends": ["redis"],
        "redis_url": redis_url,
    }
    done = publish(JobConfig.model_validate(data), RUN_DATE)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    meta = json.loads(client.get(f"bs:{p.model}:snap:{done.snapshot_id}:meta"))
    removed = p.removed[:3]
    for entity in removed:  # the batch "missed" them: gone from the served hashes
        key = str(entity)
        for prefix in ("b", "mb"):
            bucket = bucket_of(key, int(meta["buckets"]))
            assert client.hdel(f"bs:{p.model}:snap:{done.snapshot_id}:{prefix}:{bucket}", key)
    shutil.rmtree(tmp_path / "serving")  # no files: the features must come from Redis
    settings = ServeSettings(
        snapshot_root=tmp_path / "none",
        backend="redis",
        redis_url=redis_url,
        models=(p.model,),
        live_models={p.model: "scored"},
    )
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/{p.model}/predictions"
        for entity in removed:
            body = httpx.get(f"{url}/{entity}", params={"members": "true"}).json()
            assert body["source"] == "live", body
            assert_batch_answer(body, p.batch[entity])
