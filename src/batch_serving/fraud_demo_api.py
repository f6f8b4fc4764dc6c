"""Step 4 of the fraud demo: the lookup API with live windowed answers, over a serving root
laid out as ``publish`` would (no card of the stream in the nightly predictions, so every
answer is live: the feature snapshot's median amount, the online store's fresh windows)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from batch_serving.config import JobConfig
from batch_serving.features import fraud_example
from batch_serving.kafka_roundtrip import RoundTripError
from batch_serving.ports import free_port

if TYPE_CHECKING:
    from batch_serving.fraud_demo import Trained


def ask_api(
    workdir: Path,
    job_file: Path,
    model: str,
    trained: Trained,
    events: pd.DataFrame,
    cards: list[str],
    cfg: JobConfig,
    rules: list[dict[str, Any]],
) -> tuple[tuple[float, float], dict[str, dict[str, Any]]]:
    """The lookup API with live windowed answers, in this process on a free loopback port:
    each card's answer (the nightly predictions hold none of them, so every answer is live)."""
    import httpx

    from batch_serving.api.app import create_app
    from batch_serving.api.server import running_server
    from batch_serving.config import ServeSettings

    root = workdir / "serving"
    publish_features(root, model, trained, events, cfg, rules)
    settings = ServeSettings(
        snapshot_root=root, live_models={model: "scored"}, live_window_jobs=(job_file,)
    )
    with (
        running_server(create_app(settings), free_port()) as url,
        httpx.Client(timeout=60) as http,
    ):
        start = time.time()
        got = {c: http.get(f"{url}/v1/models/{model}/predictions/{c}") for c in cards}
        end = time.time()
    for card, response in got.items():
        if response.status_code != 200:
            raise RoundTripError(
                f"the API answered {response.status_code} for {card}: {response.text}"
            )
    return (start, end), {card: shown(response.json()) for card, response in got.items()}


def shown(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of a live answer a reader looks at."""
    keys = ("entity_id", "source", "values", "aggregates", "features_as_of", "model_version")
    return {k: body.get(k) for k in keys}


def publish_features(
    root: Path,
    model: str,
    trained: Trained,
    events: pd.DataFrame,
    cfg: JobConfig,
    rules: list[dict[str, Any]],
) -> None:
    """A serving root as ``publish`` lays it out: predictions of no card of the stream, and a
    feature snapshot of every card: its median amount (what a live answer scores as the next
    purchase) and window columns the online store replaces."""
    import datetime as dt

    import pyarrow as pa

    from batch_serving.serving.features import FEATURES_DIR
    from batch_serving.serving.format import build_table, write_snapshot
    from batch_serving.serving.pointer import ServingLayout, write_pointer

    layout = ServingLayout(root)
    snapshot_id = f"demo_v{trained.version}"
    directory = layout.snapshot_dir(model, snapshot_id)
    common = {
        "model": model,
        "model_version": trained.version,
        "model_uri": f"models:/{model}/{trained.version}",
        "run_date": dt.date.today().isoformat(),
        "run_id": "demo",
        "entity_columns": ["card_id"],
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    predictions = pa.table({"card_id": ["nightly-only"], "score": [0.0]})
    write_snapshot(
        build_table(predictions, ["card_id"], ["score"]),
        directory,
        {**common, "snapshot_id": snapshot_id},
    )
    cards = events.groupby("card_id")["amount"].median()
    windows = [f for f in trained.features if f not in fraud_example.PLAIN]
    stale = {  # counts are integers, sums floats: the types the windows give
        name: pa.array(np.zeros(len(cards), dtype=np.int64 if "_count_" in name else np.float64))
        for name in windows
    }
    table = pa.table({"card_id": list(cards.index), "amount": cards.to_numpy(), **stale})
    write_snapshot(
        build_table(table, ["card_id"], ["amount", *windows]),
        directory / FEATURES_DIR,
        {
            **common,
            "snapshot_id": f"features-{snapshot_id}",
            "tracking_uri": cfg.model.tracking_uri,
            "registry_uri": cfg.model.effective_registry_uri,
            "positive_label": 1,
            "score_column": "score",
            "rules": rules,
        },
    )
    write_pointer(layout, model, snapshot_id, [])
