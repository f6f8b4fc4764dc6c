"""The date's lease as an object on the bucket (``tables.object_lease``), against moto's S3
server: create-if-absent, heartbeat and takeover with ``If-Match``, conditional release, and
two ``score`` runs of one date on ``s3://`` that meet at the bucket, not on a local file."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import pytest
import yaml
from conftest import RUN_DATE, customers
from live import S3Server, free_port
from test_concurrency import INPUTS, start_score

from batch_serving.cli import main
from batch_serving.config import StorageConfig
from batch_serving.errors import LeaseHeldError
from batch_serving.storage import location
from batch_serving.storage.conditional import Deleted, S3Objects, conditional_objects
from batch_serving.tables.layout import predictions_layout
from batch_serving.tables.lease import LeaseHolder, encode_holder
from batch_serving.tables.object_lease import RELEASED_AT, ObjectLease, ObjectLeases

cloudpickle.register_pickle_by_value(builders)
PARTITION = "ds=2026-11-22"


class SerialS3Server(S3Server):
    """moto's S3 app answering one request at a time. moto checks a condition and then writes
    in two steps, so its threaded server can let two concurrent conditional PUTs both
    succeed (measured: 1 of 150 create races); S3 decides each atomically. Served serially,
    every request is atomic, as on S3, and the races below test our protocol, not moto's."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        code = (
            "from werkzeug.serving import run_simple\n"
            "from moto.moto_server.werkzeug_app import DomainDispatcherApplication, "
            "create_backend_app\n"
            f"run_simple('127.0.0.1', {self.port}, "
            "DomainDispatcherApplication(create_backend_app), threaded=False)\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{self.endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto's S3 app did not start") from None
                time.sleep(0.1)


@pytest.fixture(scope="module")
def serial_s3() -> Iterator[S3Server]:
    server = SerialS3Server()
    yield server
    server.stop()


@pytest.fixture
def leases(serial_s3: S3Server) -> ObjectLeases:
    """The lease store of a fresh bucket's output root, as the layout chooses it."""
    storage = StorageConfig.model_validate(serial_s3.storage)
    bucket = f"bs-{uuid.uuid4().hex[:12]}"
    location(f"s3://{bucket}", storage).mkdir()
    store = predictions_layout(f"s3://{bucket}/out", "churn", storage, "parquet").leases
    assert isinstance(store, ObjectLeases)
    return store


def lease(store: ObjectLeases, run_id: str, **kwargs: Any) -> ObjectLease:
    return ObjectLease(
        store.objects, store.key("predictions", "churn", PARTITION), run_id, **kwargs
    )


def put_holder(store: ObjectLeases, run_id: str, host: str, heartbeat_age_s: float) -> str:
    """A lease record written as another host's run would have (returns its ETag)."""
    beat = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=heartbeat_age_s)).isoformat()
    holder = LeaseHolder(run_id, host, 4242, beat, beat)
    key = store.key("predictions", "churn", PARTITION)
    seen = store.objects.read(key)
    data = encode_holder(holder)
    etag = (
        store.objects.create(key, data)
        if seen is None
        else store.objects.replace(key, data, seen.etag)
    )
    assert etag is not None
    return etag


def wait_for(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_store_honours_if_none_match_and_if_match(leases: ObjectLeases) -> None:
    """The protocol the lease rests on, one request at a time: a second create and a replace
    or delete of a version that is no longer there are refused."""
    objects, key = leases.objects, "t/k.json"
    first = objects.create(key, b"a")
    assert first is not None and objects.create(key, b"b") is None
    second = objects.replace(key, b"c", first)
    assert second is not None and second != first
    assert objects.replace(key, b"d", first) is None  # the version judged is gone
    assert objects.delete(key, first) == "changed"
    seen = objects.read(key)
    assert seen is not None and seen.data == b"c" and seen.etag == second
    assert objects.delete(key, second) == "deleted" and objects.read(key) is None
    assert objects.replace(key, b"e", second) is None  # no key: no replace


def test_second_contender_is_refused_naming_partition_and_holder(leases: ObjectLeases) -> None:
    key = leases.key("predictions", "churn", PARTITION)
    with lease(leases, "run-a"):
        holder = leases.holders("predictions", "churn")
        assert [h.run_id for h in holder] == ["run-a"]
        with pytest.raises(LeaseHeldError) as raised, lease(leases, "run-b"):
            pass
    message = str(raised.value)
    assert leases.objects.uri(key) in message and PARTITION in message
    assert "run run-a" in message and f"host {socket.gethostname()}" in message
    assert "--wait" in message
    assert leases.objects.read(key) is None  # released: the object is deleted
    with lease(leases, "run-b") as second:
        assert second.still_held()


def test_stale_lease_is_taken_over_by_exactly_one_of_two_threads(leases: ObjectLeases) -> None:
    """Both threads judge the same stale version; If-Match lets one replace it. Several rounds,
    each from a fresh stale record, so the race is run more than once."""
    for turn in range(10):
        put_holder(leases, f"run-dead-{turn}", "other-host.invalid", heartbeat_age_s=600)
        won, lost = race(leases, [f"run-{turn}-1", f"run-{turn}-2"])
        assert len(won) == 1 and len(lost) == 1, (turn, won, lost)
        assert f"run {won[0].run_id}" in lost[0]  # the loser names the winner
        assert won[0].holder().run_id == won[0].run_id  # type: ignore[union-attr]
        won[0].__exit__(None, None, None)


def race(store: ObjectLeases, runs: list[str]) -> tuple[list[ObjectLease], list[str]]:
    """Each run tries the lease from its own thread, all let go at once; the winners and
    the losers' messages."""
    start = threading.Barrier(len(runs))
    won: list[ObjectLease] = []
    lost: list[str] = []

    def contend(run_id: str) -> None:
        contender = lease(store, run_id, stale_after_s=60)
        start.wait(5)
        try:
            won.append(contender.__enter__())
        except LeaseHeldError as error:
            lost.append(str(error))

    threads = [threading.Thread(target=contend, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return won, lost


def test_heartbeat_after_a_takeover_stops_and_still_held_turns_false(
    leases: ObjectLeases, caplog: pytest.LogCaptureFixture
) -> None:
    """run-a stalls past what run-b calls stale; run-b takes over; run-a's next heartbeat
    finds another version (If-Match fails), stops, and its release leaves run-b's lease."""
    caplog.set_level(logging.INFO, logger="batch_serving.tables.object_lease")
    key = leases.key("predictions", "churn", PARTITION)
    first = lease(leases, "run-a", heartbeat_s=1.0, stale_after_s=30).__enter__()
    time.sleep(0.5)
    second = lease(leases, "run-b", heartbeat_s=0.1, stale_after_s=0.3).__enter__()
    try:
        assert "broke stale lease" in caplog.text and "run run-a" in caplog.text
        assert second.still_held() and not first.still_held()
        wait_for(lambda: "heartbeat stops" in caplog.text, timeout_s=5)
        assert first._beat is not None and not first._beat.is_alive()
        first.__exit__(None, None, None)
        assert "left as it is" in caplog.text
        assert second.still_held() and second.holder().run_id == "run-b"  # type: ignore[union-attr]
    finally:
        second.__exit__(None, None, None)
    assert leases.objects.read(key) is None and "run run-b released" in caplog.text


class NoConditionalDelete:
    """The bucket as a store that refuses conditional deletes (a fault injected on purpose):
    every other request goes to the real server."""

    def __init__(self, objects: S3Objects) -> None:
        self.objects = objects

    def __getattr__(self, name: str) -> Any:
        return getattr(self.objects, name)

    def delete(self, key: str, etag: str) -> Deleted:
        return "unsupported"


def test_release_without_conditional_delete_leaves_a_released_record(
    leases: ObjectLeases,
) -> None:
    assert isinstance(leases.objects, S3Objects)
    store = ObjectLeases(NoConditionalDelete(leases.objects), leases.prefix)  # type: ignore[arg-type]
    key = store.key("predictions", "churn", PARTITION)
    with lease(store, "run-a"):
        pass
    seen = leases.objects.read(key)
    assert seen is not None and json.loads(seen.data)["heartbeat_at"] == RELEASED_AT
    with lease(store, "run-b") as second:  # the released record is stale at once
        assert second.still_held()
        put_holder(store, "run-c", "other-host.invalid", heartbeat_age_s=0)  # taken meanwhile
    assert json.loads(leases.objects.read(key).data)["run_id"] == "run-c"  # type: ignore[union-attr]


def test_gcs_and_local_roots_have_no_conditional_object_store_here(tmp_path: Path) -> None:
    assert conditional_objects(location(str(tmp_path))) is None
    assert conditional_objects(location("gs://bucket/out")) is None


@pytest.mark.slow
def test_two_runs_of_one_date_on_s3_have_one_writer(
    spark, s3: S3Server, tmp_path, register, warehouse, job_config, capsys
) -> None:
    """The first run holds the lease object mid-scoring; a second run of the same date meets
    it at the bucket (no lease_dir: its own temp directory would not have kept them apart)."""
    rows = customers(300)
    hold = tmp_path / "hold"
    model = builders.SlowScore(1.0, seconds=0.5, hold=str(hold))
    name, _ = register(model, rows[INPUTS], pyfunc=True)
    warehouse(rows, files=2)
    storage = StorageConfig.model_validate(s3.storage)
    bucket = f"bs-{uuid.uuid4().hex[:12]}"
    location(f"s3://{bucket}", storage).mkdir()
    cfg = job_config(name, engine="arrow_direct", output={"root": f"s3://{bucket}/out"})
    data = cfg.model_dump(mode="json")
    data["storage"] = {**s3.storage}  # as written, not the masked secret of a dump
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(data))
    layout = predictions_layout(f"s3://{bucket}/out", name, storage, "parquet")
    probe = layout.lease(RUN_DATE, "probe")

    hold.touch()
    first = start_score(config)
    try:
        deadline = time.monotonic() + 120
        while (holder := probe.holder()) is None:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "first run never took the lease"
            time.sleep(0.1)
        assert holder.pid == first.pid
        code = main(["score", "--config", str(config), "--run-date", str(RUN_DATE)])
        err = capsys.readouterr().err
        assert code == 7, err
        assert probe.where in err and holder.run_id in err and f"pid {first.pid}" in err
        hold.unlink()
        _, first_err = first.communicate(timeout=240)
    finally:
        hold.unlink(missing_ok=True)
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, first_err
    assert layout.current_run_id(RUN_DATE) == holder.run_id
    runs = layout.partition_dir(RUN_DATE) / "_runs"
    assert [p.name for p in runs.iterdir()] == [holder.run_id]  # the loser wrote nothing
    assert layout.lease_holders() == []  # released: no lease object left
