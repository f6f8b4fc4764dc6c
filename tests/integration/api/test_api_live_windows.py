"""Live answers with windowed features: the lookup API over real HTTP reads each card's events
from a real redis-server (written by ``OnlineFeatureWriter``, as the stream writes them),
computes its windows as of the request, and scores them with the feature snapshot's other
features. Every score equals the model called in-process on the brute-force recomputation;
``features_as_of`` is the newest event's time; answers are never cached; a down store is a
503 naming it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from live import LiveServer, free_port
from windows_api import (
    FEATURES,
    Query,
    credit_limits,
    events,
    fit_model,
    job_file,
    publish_features,
    released,
    training_frame,
)
from windows_oracle import brute_force, spec

from batch_serving.api.app import create_app
from batch_serving.config import ServeSettings, load_config
from batch_serving.errors import ConfigError
from batch_serving.features.offline import to_micros
from batch_serving.features.online import OnlineFeatureWriter, connect, online_prefix

CARDS = ["c-now", "c-idle", "c-ahead", "c-none"]


def now_us() -> int:
    return time.time_ns() // 1000


def expected_score(model: Any, history: pd.DataFrame, card: str, at_us: int) -> tuple[Any, ...]:
    """The model in-process on the card's brute-force windows at ``at_us`` and its snapshot
    credit limit; also the windows, to assert on."""
    windows = brute_force(history, Query(card, at_us).frame(), spec()).iloc[0]
    row = {name: windows[name] for name in FEATURES[:-1]}
    row["credit_limit"] = credit_limits(CARDS)[card]
    score = float(model.predict_proba(pd.DataFrame([row])[FEATURES])[0, 1])
    return score, windows


def newest_iso(history: pd.DataFrame, card: str) -> str:
    newest = history.loc[history["card_id"] == card, "ts"].max()
    return newest.tz_localize("UTC").isoformat()


@pytest.fixture
def served(
    tmp_path: Path, register: Callable[..., tuple[str, int]], tracking_uri: str, redis_url: str
) -> tuple[Any, str, Path, Path]:
    frame, _ = training_frame()
    model = fit_model()
    name, version = register(model, frame[FEATURES].head(20))
    root = tmp_path / "serving"
    publish_features(root, name, version, tracking_uri, CARDS)
    return model, name, root, job_file(tmp_path / "job", name, tracking_uri, redis_url)


@pytest.mark.slow
def test_live_answers_use_the_entity_fresh_windows(
    served: tuple[Any, str, Path, Path], redis_url: str
) -> None:
    model, name, root, job = served
    now = time.time()
    history = pd.concat(
        [
            events("c-now", [7200, 300, 240, 60, 30, 30], now, seed=1),  # 2h ago: outside
            events("c-idle", [1500, 1200], now, seed=2),  # newest 20 min ago: 10m window empty
            events("c-ahead", [-3000, -3700], now, seed=3),  # clock behind: as of newest + 1
        ],
        ignore_index=True,
    )
    cfg = load_config(job)
    writer = OnlineFeatureWriter(connect(redis_url), online_prefix(cfg), spec())
    writer.write(0, released(history.iloc[:4]))
    writer.write(1, released(history.iloc[4:]))
    settings = ServeSettings(
        snapshot_root=root, live_models={name: "scored"}, live_window_jobs=(job,)
    )
    with LiveServer(create_app(settings)) as server, httpx.Client(timeout=120) as http:
        url = f"{server.url}/v1/models/{name}/predictions"
        assert http.get(f"{url}/c-batch").json()["source"] == "snapshot"
        for card in ("c-now", "c-idle", "c-none"):
            before = now_us()
            got = http.get(f"{url}/{card}")
            after = now_us()
            assert got.status_code == 200, got.text
            body = got.json()
            score, windows = expected_score(model, history, card, before)
            assert expected_score(model, history, card, after)[0] == score  # stable in between
            assert body["source"] == "live"
            assert body["values"]["score"] == pytest.approx(score, abs=1e-9), card
            assert body["features_as_of"] == (
                None if card == "c-none" else newest_iso(history, card)
            )
            if card == "c-idle":  # as of now: its events left the 10m window, not the 1h one
                assert windows["amount_count_10m"] == 0 and windows["amount_count_1h"] == 2
        ahead = http.get(f"{url}/c-ahead").json()
        newest = int(to_micros(history.loc[history["card_id"] == "c-ahead", "ts"]).max())
        score, windows = expected_score(model, history, "c-ahead", newest + 1)
        assert windows["amount_count_10m"] == 1  # the older of its two events
        assert ahead["values"]["score"] == pytest.approx(score, abs=1e-9)
        assert ahead["features_as_of"] == newest_iso(history, "c-ahead")

        # a new event of c-now: the next answer has it (never a cached one)
        later = events("c-now", [1], time.time(), seed=4)
        writer.write(2, released(later))
        history = pd.concat([history, later], ignore_index=True)
        before = now_us()
        again = http.get(f"{url}/c-now").json()
        score, windows = expected_score(model, history, "c-now", before)
        assert again["source"] == "live" and again["features_as_of"] == newest_iso(history, "c-now")
        assert again["values"]["score"] == pytest.approx(score, abs=1e-9)
        assert windows["amount_count_10m"] == 6  # 5 recent + the new one

        batch = http.post(
            f"{url}:batchGet", json={"ids": ["c-batch", "c-now", "c-none", "nobody"]}
        ).json()
        assert batch["missing"] == ["nobody"]
        by_id = {r["entity_id"]: r for r in batch["results"]}
        assert [by_id[i]["source"] for i in ("c-batch", "c-now", "c-none")] == [
            "snapshot",
            "live",
            "live",
        ]
        assert by_id["c-now"]["features_as_of"] == newest_iso(history, "c-now")
        assert by_id["c-none"]["features_as_of"] is None
        assert http.get(f"{url}/nobody").status_code == 404


@pytest.mark.slow
def test_an_unreachable_online_store_is_a_503_naming_it(
    served: tuple[Any, str, Path, Path], tmp_path: Path, tracking_uri: str
) -> None:
    _, name, root, _ = served
    port = free_port()  # nothing listens there
    down = job_file(tmp_path / "down", name, tracking_uri, f"redis://127.0.0.1:{port}/0")
    settings = ServeSettings(
        snapshot_root=root, live_models={name: "scored"}, live_window_jobs=(down,)
    )
    with LiveServer(create_app(settings)) as server, httpx.Client(timeout=120) as http:
        got = http.get(f"{server.url}/v1/models/{name}/predictions/c-now")
        assert got.status_code == 503, got.text
        error = got.json()["error"]
        assert error["code"] == "feature_store_unavailable"
        assert f"Redis at 127.0.0.1:{port}/0" in error["message"]
        assert "is unreachable" in error["message"]
        # the snapshot still answers what it holds
        assert http.get(f"{server.url}/v1/models/{name}/predictions/c-batch").status_code == 200


def test_a_window_job_whose_model_is_not_live_is_refused(tmp_path: Path, tracking_uri: str) -> None:
    job = job_file(tmp_path / "job", "other_model", tracking_uri, "redis://127.0.0.1:1/0")
    settings = ServeSettings(
        snapshot_root=tmp_path, live_models={"fraud": "scored"}, live_window_jobs=(job,)
    )
    with pytest.raises(ConfigError, match=r"names model 'other_model', which live_models"):
        create_app(settings)
