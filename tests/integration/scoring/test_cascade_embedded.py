"""Embedded cascade (issue #28 item 3): a small model in-process answers the rows it is sure
of; only the undecided rows go over HTTP to a real lookup API's ``POST :score`` (each request
body is recorded by the test's own HTTP hook), in batches; the API down is an error naming the
endpoint, and ``partial=True`` returns the decided rows with the others marked undecided.

No Spark: the big model is registered in MLflow and its snapshot is written by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import register_model
from live import LiveServer, free_port
from sklearn.linear_model import LogisticRegression

from batch_serving.api.app import create_app
from batch_serving.config import ServeSettings
from batch_serving.embedded import EmbeddedCascade, LocalStage, RemoteStage, load
from batch_serving.errors import ConfigError, RemoteScoringError
from batch_serving.serving.format import build_table, write_snapshot
from batch_serving.serving.pointer import ServingLayout, write_pointer

FEATURES = ["f0", "f1", "f2"]
ID = "customer_id"
SURE = "score <= 0.3 or score >= 0.7"


class Setup:
    """The running API (serving the big model live), the local small model, the big oracle."""

    def __init__(self, url: str, small: Any, big: LogisticRegression, model: str) -> None:
        self.url, self.small, self.big, self.model = url, small, big, model


def frame(n: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 3)), columns=FEATURES)


def _publish(root: Path, model: str, version: int, tracking: str, features: pd.DataFrame) -> None:
    """A current snapshot of the big model and its feature snapshot: what makes it live."""
    layout = ServingLayout(root)
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
    write_snapshot(
        build_table(pa.table({ID: [1], "score": [0.5]}), [ID], ["score"]), directory, header
    )
    table = pa.Table.from_pandas(features.assign(**{ID: range(len(features))}))
    feature_header = {**header, "snapshot_id": "f1", "tracking_uri": tracking}
    write_snapshot(build_table(table, [ID], FEATURES), directory / "features", feature_header)
    write_pointer(layout, model, "s1", [])


@pytest.fixture(scope="module")
def setup(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("cascade-embedded")
    train = frame(400, 1)
    label = (train.f0 + 0.5 * train.f1 - 0.3 * train.f2 > 0).astype(int)
    small = LogisticRegression(C=0.05).fit(train[["f0", "f1"]], label)
    big = LogisticRegression().fit(train, label)
    small_name, small_version = register_model(tracking_uri, small, train[["f0", "f1"]])
    big_name, big_version = register_model(tracking_uri, big, train)
    _publish(root, big_name, big_version, tracking_uri, train)
    settings = ServeSettings(snapshot_root=root, live_models={big_name: "scored"})
    embedded = load(f"models:/{small_name}/{small_version}", tracking_uri=tracking_uri)
    with LiveServer(create_app(settings)) as server:
        yield Setup(server.url, embedded, big, big_name)


class Recorder:
    """The test's own view of the wire: every request body sent to the API."""

    def __init__(self) -> None:
        self.bodies: list[list[dict[str, Any]]] = []
        self.client = httpx.Client(event_hooks={"request": [self.record]})

    def record(self, request: httpx.Request) -> None:
        self.bodies.append(json.loads(request.read())["rows"])


def chain(
    setup: Setup, recorder: Recorder, batch_size: int = 256, url: str = ""
) -> EmbeddedCascade:
    return EmbeddedCascade(
        [LocalStage("small", setup.small, SURE)],
        RemoteStage(url or setup.url, setup.model, batch_size=batch_size, timeout_s=10),
        client=recorder.client,
    )


def test_only_the_undecided_rows_go_over_http_in_batches(setup: Setup) -> None:
    rows = frame(300, 5)
    records = rows.to_dict("records")
    small = setup.small.predict(rows)
    sure = (small <= 0.3) | (small >= 0.7)
    assert 0 < sure.sum() < 300
    recorder = Recorder()
    with chain(setup, recorder, batch_size=40) as cascade:
        answers = cascade.predict(records)

    undecided = [records[i] for i in np.flatnonzero(~sure)]
    sent = [row for body in recorder.bodies for row in body]
    assert sent == undecided  # exactly the undecided rows, in order; decided rows never sent
    assert [len(b) for b in recorder.bodies] == [
        min(40, len(undecided) - i) for i in range(0, len(undecided), 40)
    ]
    assert cascade.requests == len(recorder.bodies) and cascade.rows_sent == len(undecided)
    big = setup.big.predict_proba(rows)[:, 1]
    expected = np.where(sure, small, big)
    assert np.max(np.abs(np.array([a.score for a in answers]) - expected)) <= 1e-12
    assert [a.answered_by for a in answers] == ["small" if s else setup.model for s in sure]


def test_rows_all_decided_locally_send_nothing(setup: Setup) -> None:
    rows = frame(300, 6)
    small = setup.small.predict(rows)
    decided = rows[(small <= 0.3) | (small >= 0.7)].to_dict("records")
    recorder = Recorder()
    answers = chain(setup, recorder).predict(decided)
    assert recorder.bodies == []
    assert {a.answered_by for a in answers} == {"small"}


def test_api_down_is_an_error_naming_the_endpoint_and_partial_keeps_the_decided(
    setup: Setup,
) -> None:
    rows = frame(100, 7)
    small = setup.small.predict(rows)
    sure = (small <= 0.3) | (small >= 0.7)
    assert 0 < sure.sum() < 100
    down = f"http://127.0.0.1:{free_port()}"
    recorder = Recorder()
    cascade = chain(setup, recorder, batch_size=10, url=down)
    endpoint = f"{down}/v1/models/{setup.model}:score"
    with pytest.raises(RemoteScoringError, match=f"POST {endpoint}") as info:
        cascade.predict(rows)
    assert f"{int((~sure).sum())} row(s) unanswered" in str(info.value)

    answers = cascade.predict(rows, partial=True)
    assert [a.decided for a in answers] == sure.tolist()
    assert [a.answered_by for a in answers] == ["small" if s else None for s in sure]
    scores = [a.score for a in answers]
    assert all(scores[i] is None for i in np.flatnonzero(~sure))
    kept = np.array([scores[i] for i in np.flatnonzero(sure)])
    assert np.max(np.abs(kept - small[sure])) <= 1e-12
    assert len(recorder.bodies) == 2  # one failed request per call: it stops at the first


def test_rows_the_api_refuses_raise_even_with_partial(setup: Setup) -> None:
    rows = frame(50, 8).assign(extra=1.0)  # a field the big model does not have
    cascade = chain(setup, Recorder())
    with pytest.raises(RemoteScoringError, match=r"HTTP 422 rows\[0\]\.extra: unknown field"):
        cascade.predict(rows, partial=True)


def test_a_condition_on_an_output_the_local_model_lacks_names_the_stage(setup: Setup) -> None:
    with pytest.raises(ConfigError, match=r"stages\[0\].answer_if: unknown output 'prediction'"):
        EmbeddedCascade(
            [LocalStage("small", setup.small, "prediction > 3")], RemoteStage(setup.url, "m")
        )
