"""Live scoring of a cascade job (issue #28 item 3): a real batch run of a two-stage cascade is
published with its features, some ids of each stage are removed from the served snapshot, and
the lookup API scores them live over real HTTP (GET fallback, batchGet fill, ``POST :score``).
Oracle: the batch's own predictions rows (served prediction to 1e-12, ``answered_by``,
``action``, both stages' structs). Each stage's model records the rows it is given, so the
test also sees that the second stage received exactly the rows the first left open.

A cascade job whose feature snapshot predates live cascades is refused (404
``live_unsupported``), never answered by the champion alone."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import httpx
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import RUN_DATE, TEST_SPARK_CONF, customers, register_model
from live import LiveServer
from pyspark.sql import SparkSession

from batch_serving import sample_data
from batch_serving.api.app import create_app
from batch_serving.config import JobConfig, ServeSettings
from batch_serving.runs.job import run_score
from batch_serving.serving.format import KEY, SNAPSHOT_FILE, read_snapshot_manifest, write_snapshot
from batch_serving.serving.publish import publish

cloudpickle.register_pickle_by_value(builders)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

FEATURES = ["tenure_months", "support_calls"]
SURE = "prediction <= 0.3 or prediction >= 0.7"
RULES = [{"when": "prediction >= 0.5", "action": "call"}, {"otherwise": "wait"}]
STAGES = ("champion", "big")
PER_STAGE = 4  # removed ids answered by each stage
UNKNOWN = 987654321


class RecordingScore(mlflow.pyfunc.PythonModel):
    """A pyfunc stage that leaves one file per call with the feature rows it was given."""

    def __init__(self, calls: str, scale: float) -> None:
        self.calls, self.scale = calls, scale

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        rows = model_input[FEATURES].astype(int).values.tolist()
        Path(self.calls, uuid.uuid4().hex).write_text(json.dumps(rows))
        raw = self.scale * model_input["tenure_months"] - 0.8 * model_input["support_calls"]
        return 1 / (1 + np.exp(-raw.to_numpy(np.float64) / 10))


def received(calls: Path) -> Counter[tuple[int, ...]]:
    """Every feature row the stage's model was given since ``calls`` was last emptied."""
    rows: Counter[tuple[int, ...]] = Counter()
    for path in calls.iterdir():
        rows.update(tuple(r) for r in json.loads(path.read_text()))
    return rows


def forget(calls: Path) -> None:
    for path in calls.iterdir():
        path.unlink()


@dataclass(frozen=True)
class Published:
    cfg: JobConfig
    root: Path
    model: str
    calls: dict[str, Path]  # stage -> where its model records the rows it was given
    removed: list[int]  # ids taken out of the served snapshot, PER_STAGE answered by each stage
    batch: dict[int, dict[str, Any]]  # customer_id -> the batch's predictions row
    features: dict[int, dict[str, Any]]  # customer_id -> the published feature row

    def open_rows(self, ids: list[int]) -> Counter[tuple[int, ...]]:
        """Feature rows of ``ids`` that the first stage left open in the batch."""
        return Counter(
            tuple(int(self.features[i][f]) for f in FEATURES)
            for i in ids
            if self.batch[i]["answered_by"] == "big"
        )

    def row(self, entity: int) -> dict[str, Any]:
        return {f: self.features[entity][f] for f in FEATURES}


@pytest.fixture(scope="module")
def published(
    spark: SparkSession, tracking_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    root = tmp_path_factory.mktemp("cascade-live")
    calls = {stage: root / f"calls_{stage}" for stage in STAGES}
    for directory in calls.values():
        directory.mkdir()
    sample = customers(50)[FEATURES]
    small, _ = register_model(
        tracking_uri, RecordingScore(str(calls["champion"]), 0.3), sample, pyfunc=True
    )
    big, _ = register_model(
        tracking_uri, RecordingScore(str(calls["big"]), 0.1), sample, pyfunc=True
    )
    sample_data.write_partition(root / "warehouse", RUN_DATE, customers(240, seed=21), files=2)
    cfg = JobConfig.model_validate(
        {
            "job": "cascade_live",
            "model": {"name": small, "alias": "champion", "tracking_uri": tracking_uri},
            "members": {"big": {"name": big, "alias": "champion"}},
            "cascade": {"stages": [{"member": "champion", "answer_if": SURE}, {"member": "big"}]},
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
    batch = {r[sample_data.ENTITY]: r for r in pq.read_table(result.committed.path).to_pylist()}
    with pa.memory_map(str(done.path / "features" / SNAPSHOT_FILE)) as source:
        features = {r[KEY]: r for r in ipc.open_file(source).read_all().to_pylist()}
    by_stage = {s: sorted(i for i, r in batch.items() if r["answered_by"] == s) for s in STAGES}
    assert all(len(ids) > PER_STAGE for ids in by_stage.values()), by_stage
    firsts = [by_stage[s][:PER_STAGE] for s in STAGES]
    removed = [i for pair in zip(*firsts, strict=True) for i in pair]  # champion, big, ...
    remove_ids(done.path, removed)
    for directory in calls.values():
        forget(directory)  # the batch's calls; from here on only live scoring records
    return Published(cfg, root / "serving", small, calls, removed, batch, features)


def remove_ids(directory: Path, ids: list[int]) -> None:
    """Rewrite the snapshot without ``ids`` (as if the batch had missed them)."""
    with pa.memory_map(str(directory / SNAPSHOT_FILE)) as source:
        table = ipc.open_file(source).read_all()
    kept = table.filter(pc.invert(pc.is_in(table.column(KEY), pa.array(ids, pa.int64()))))
    assert len(kept) == len(table) - len(ids)
    manifest = read_snapshot_manifest(directory).to_dict()
    write_snapshot(kept, directory, {k: v for k, v in manifest.items() if k != "numpy_columns"})


def assert_batch_answer(answer: dict[str, Any], row: dict[str, Any]) -> None:
    """Served columns (prediction to 1e-12, answered_by, action) and both stages' structs equal
    the batch's row; the second stage's prediction is null where the first answered."""
    values = answer["values"]
    assert set(values) == {"prediction", "answered_by", "action"}
    assert values["answered_by"] == row["answered_by"]
    assert values["action"] == row["action"]
    assert abs(values["prediction"] - row["prediction"]) <= 1e-12
    assert values["prediction"] == answer["members"][row["answered_by"]]["prediction"]
    assert set(answer["members"]) == set(STAGES)
    for key in STAGES:
        got, want = answer["members"][key], row[key]
        assert set(got) == set(want), key
        if want["prediction"] is None:
            assert got["prediction"] is None, key
        else:
            assert abs(got["prediction"] - want["prediction"]) <= 1e-12, key
        assert {k: v for k, v in got.items() if k != "prediction"} == {
            k: v for k, v in want.items() if k != "prediction"
        }, key
    assert (answer["members"]["big"]["prediction"] is None) == (row["answered_by"] == "champion")


@pytest.mark.slow
def test_missing_ids_of_a_cascade_are_answered_by_the_answering_stage(
    published: Published,
) -> None:
    p = published
    for directory in p.calls.values():
        forget(directory)
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
            assert body["source"] == "live", body
            assert_batch_answer(body, p.batch[entity])
            plain = httpx.get(f"{url}/{entity}").json()  # cached; members only when asked
            assert plain["source"] == "cache" and plain["values"] == body["values"]
        assert [p.batch[i]["answered_by"] for i in p.removed] == list(STAGES) * PER_STAGE
        assert received(p.calls["champion"]) == Counter(tuple(p.row(i).values()) for i in p.removed)
        assert received(p.calls["big"]) == p.open_rows(p.removed)
        assert sum(received(p.calls["big"]).values()) == PER_STAGE
        assert httpx.get(f"{url}/{UNKNOWN}").status_code == 404


@pytest.mark.slow
def test_batch_get_fill_and_score_rows_answer_like_the_batch(published: Published) -> None:
    p = published
    for directory in p.calls.values():
        forget(directory)
    settings = ServeSettings(snapshot_root=p.root, live_models={p.model: "scored"})
    present = next(i for i in p.batch if i not in p.removed)
    ids = [present, *p.removed, UNKNOWN]
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/{p.model}/predictions:batchGet"
        got = httpx.post(url, json={"ids": ids, "members": True})
        assert got.status_code == 200, got.text
        assert got.json()["missing"] == [str(UNKNOWN)]
        results = {r["entity_id"]: r for r in got.json()["results"]}
        assert results[str(present)]["source"] == "snapshot"
        for entity in (present, *p.removed):
            assert_batch_answer(results[str(entity)], p.batch[entity])
        assert {results[str(i)]["source"] for i in p.removed} == {"live"}
        # one scoring call for the filled ids: the second stage got exactly the open ones
        assert received(p.calls["big"]) == p.open_rows(p.removed)
        forget(p.calls["big"])

        rows = [p.row(i) for i in p.removed]
        scored = httpx.post(f"{server.url}/v1/models/{p.model}:score", json={"rows": rows})
        assert scored.status_code == 200, scored.text
        assert scored.json()["source"] == "live"
        for result, entity in zip(scored.json()["results"], p.removed, strict=True):
            assert_batch_answer(result, p.batch[entity])
        assert received(p.calls["big"]) == p.open_rows(p.removed)


@pytest.mark.slow
def test_a_cascade_feature_snapshot_without_its_stages_is_refused(
    published: Published, tmp_path: Path
) -> None:
    """Published before the cascade travelled in the feature manifest: the champion alone
    would answer every row (no answered_by, the wrong score for open rows), so a missing id
    is a 404 live_unsupported and ``:score`` is refused the same way."""
    p = published
    root = tmp_path / "serving"
    shutil.copytree(p.root, root)
    (features,) = root.glob(f"{p.model}/snapshots/*/features")
    with pa.memory_map(str(features / SNAPSHOT_FILE)) as source:
        table = ipc.open_file(source).read_all()
    manifest = read_snapshot_manifest(features).to_dict()
    assert p.cfg.cascade is not None
    assert manifest["cascade"] == p.cfg.cascade.model_dump(mode="json", exclude_unset=True)
    old = {k: v for k, v in manifest.items() if k not in ("numpy_columns", "cascade")}
    shutil.rmtree(features)
    write_snapshot(table, features, old)
    settings = ServeSettings(snapshot_root=root, live_models={p.model: "scored"})
    with LiveServer(create_app(settings)) as server:
        url = f"{server.url}/v1/models/{p.model}"
        refused = httpx.get(f"{url}/predictions/{p.removed[1]}")
        assert refused.status_code == 404, refused.text
        error = refused.json()["error"]
        assert error["code"] == "live_unsupported"
        assert f"model {p.model!r} serves a cascade" in error["message"]
        rows = [p.row(p.removed[1])]
        assert httpx.post(f"{url}:score", json={"rows": rows}).status_code == 404
