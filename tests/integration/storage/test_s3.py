"""Object storage (issue #12): the job on a real S3-protocol server on loopback (moto_server).

Input and output on ``s3://``: the arrow_direct engine reads and writes through pyarrow's S3
client on the executors, and commits with the pointer protocol (``tables.object_commit``).
A fault injected at each step of that protocol must leave the previous run readable and whole.
Without Spark's s3a connector the dataframe engine must refuse S3 with exit 7 before scoring,
naming the jar (both engines on S3, in both formats: ``test_s3_engines.py``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import httpx
import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest
from conftest import RUN_DATE, Scored, customers, labelled, register_model
from live import LiveServer, S3Server

from batch_serving import sample_data
from batch_serving.api.app import create_app
from batch_serving.config import JobConfig, ServeSettings, StorageConfig
from batch_serving.errors import StorageError
from batch_serving.notebook import read_predictions
from batch_serving.runs.job import run_score
from batch_serving.runs.preflight import check_output
from batch_serving.runs.recovery import recover_date
from batch_serving.serving import remote
from batch_serving.serving.publish import publish, rollback
from batch_serving.storage import Location, location, resolve, spark_uri
from batch_serving.tables import object_commit
from batch_serving.tables.layout import predictions_layout

cloudpickle.register_pickle_by_value(builders)


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A fresh bucket per test: tests never see each other's objects."""
    name = f"bs-{uuid.uuid4().hex[:12]}"
    location(f"s3://{name}", StorageConfig.model_validate(s3.storage)).mkdir()
    return name


@pytest.fixture(scope="module")
def s3_model(tracking_uri: str) -> str:
    """One registered model for the module's S3 jobs (each test has its own bucket)."""
    model, _ = builders.logreg_pipeline(labelled(400))
    name = f"s3_{uuid.uuid4().hex[:8]}"
    return register_model(tracking_uri, model, customers(50)[builders.FEATURES], name=name)[0]


@pytest.fixture
def s3_job(
    s3: S3Server, bucket: str, tmp_path: Path, s3_model: str, tracking_uri: str
) -> Callable[..., JobConfig]:
    """Job configs whose input and output are on S3 (or, ``local=True``, on local disk)."""

    def _config(*, local: bool = False, engine: str = "arrow_direct", **storage: Any) -> JobConfig:
        base = str(tmp_path) if local else f"s3://{bucket}"
        return JobConfig.model_validate(
            {
                "job": "s3_job",
                "model": {"name": s3_model, "alias": "champion", "tracking_uri": tracking_uri},
                "input": {"path": f"{base}/warehouse/features"},
                "entity_columns": [sample_data.ENTITY],
                "output": {"root": f"{base}/out"},
                "engine": engine,
                "spark": {"master": "local[2]"},
                "catalog": {"enabled": False},
                "tracking": {"log_runs": False},
                "storage": {**s3.storage, "lease_dir": str(tmp_path / "leases"), **storage},
            }
        )

    return _config


def write_input(cfg: JobConfig, frame: pd.DataFrame, tmp: Path, day: dt.date = RUN_DATE) -> None:
    """Write the partition locally, then upload it where ``cfg.input.path`` points."""
    local = tmp / f"upload-{uuid.uuid4().hex[:6]}"
    sample_data.write_partition(local, day, frame, files=2)
    target = resolve(cfg.input.path, cfg.storage)
    local_target = target.as_local()
    if local_target is not None:
        sample_data.write_partition(local_target, day, frame, files=2)
        return
    dest = target / f"ds={day.isoformat()}"
    dest.rmtree()
    pafs.copy_files(
        str(local / f"ds={day.isoformat()}"),
        dest.path,
        source_filesystem=pafs.LocalFileSystem(),
        destination_filesystem=target.fs,
    )


def scores(cfg: JobConfig, day: dt.date = RUN_DATE) -> pd.Series:
    got = read_predictions(cfg, day, columns=["customer_id", "score"]).to_pandas()
    return got.set_index("customer_id")["score"].sort_index()


def keys(loc: Location) -> list[str]:
    base = loc.path + "/"
    return sorted(i.path[len(base) :] for i in loc.infos())


def test_uris_resolve_to_filesystems(s3: S3Server) -> None:
    storage = StorageConfig.model_validate(s3.storage)
    assert resolve("/tmp/x").as_local() == Path("/tmp/x")
    assert resolve("file:///tmp/x").as_local() == Path("/tmp/x")
    for uri in ("s3://b/k/", "s3a://b/k"):
        loc = resolve(uri, storage)
        assert isinstance(loc, Location) and (loc.scheme, loc.path) == ("s3", "b/k")
        assert loc.spark_uri == "s3a://b/k" and str(loc) == "s3://b/k"
    assert spark_uri("s3://b/k") == "s3a://b/k" and spark_uri("gs://b/k") == "gs://b/k"
    with pytest.raises(StorageError, match="unsupported URI scheme 'ftp'"):
        resolve("ftp://host/x")


@pytest.mark.slow
def test_s3_run_equals_local_run_and_rerun_replaces(spark, s3_job, tmp_path: Path) -> None:
    s3_cfg, local_cfg = s3_job(), s3_job(local=True)
    rows = customers(300)
    for cfg in (s3_cfg, local_cfg):
        write_input(cfg, rows, tmp_path)
        run_score(spark, cfg, RUN_DATE)
    on_s3, on_disk = scores(s3_cfg), scores(local_cfg)
    assert len(on_s3) == 300 and on_s3.index.equals(on_disk.index)
    assert np.max(np.abs(on_s3.to_numpy() - on_disk.to_numpy())) <= 1e-12

    layout = predictions_layout(s3_cfg.output.root, s3_cfg.model.name, s3_cfg.storage)
    first = layout.current_run_id(RUN_DATE)
    assert first is not None
    partition = layout.partition_dir(RUN_DATE)
    assert isinstance(partition, Location)
    names = keys(partition)
    assert "_COMMITTED.json" in names and f"_runs/{first}/_manifest.json" in names
    assert not any(
        n.startswith("_staging") for n in keys(resolve(s3_cfg.output.root, s3_cfg.storage))
    )  # type: ignore[arg-type]
    assert check_output(s3_cfg, RUN_DATE).rows == 300

    # rerun with other feature values: the date holds the new run's rows, once
    write_input(s3_cfg, customers(300, seed=8), tmp_path)
    run_score(spark, s3_cfg, RUN_DATE)
    second = layout.current_run_id(RUN_DATE)
    again = scores(s3_cfg)
    assert second != first and len(again) == 300 and again.index.equals(on_s3.index)
    assert not np.allclose(again.to_numpy(), on_s3.to_numpy())
    # the replaced run stays for the grace period (readers mid-read), then goes
    runs = sorted({n.split("/")[1] for n in keys(partition) if n.startswith("_runs/")})
    assert runs == sorted([first, second])
    recover_date(s3_job(grace_period_s=0), RUN_DATE)
    runs = sorted({n.split("/")[1] for n in keys(partition) if n.startswith("_runs/")})
    assert runs == [second]
    assert scores(s3_cfg).equals(again)

    # publish reads the committed run through the pointer; the snapshot lands on S3
    published = publish(s3_cfg, RUN_DATE)
    assert published.rows == 300 and published.snapshot_id.endswith(str(second))
    assert str(published.path).startswith(f"{s3_cfg.output.root}/serving/")


def _fail(*_: object, **__: object) -> None:
    raise OSError("injected fault")


@pytest.mark.slow
@pytest.mark.parametrize("step", ["stage", "manifest", "pointer", "cleanup"])
def test_fault_at_each_protocol_step_keeps_previous_run(
    spark, s3_job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    cfg = s3_job(grace_period_s=0)
    write_input(cfg, customers(200), tmp_path)
    run_score(spark, cfg, RUN_DATE)
    before = scores(cfg)
    layout = predictions_layout(cfg.output.root, cfg.model.name, cfg.storage)
    first = layout.current_run_id(RUN_DATE)
    write_input(cfg, customers(200, seed=8), tmp_path)

    if step == "stage":  # executors wrote every part file, then the run died
        from batch_serving.spark.engines.arrow_direct import ArrowDirectEngine

        original = ArrowDirectEngine.stage

        def stage_then_fail(self: Any, *args: Any) -> None:
            original(self, *args)
            raise StorageError("injected fault after staging")

        monkeypatch.setattr(ArrowDirectEngine, "stage", stage_then_fail)
    elif step == "manifest":
        monkeypatch.setattr("batch_serving.runs.steps.write_manifest", _fail)
    elif step == "pointer":
        monkeypatch.setattr(object_commit, "_write_pointer", _fail)
    else:  # the pointer is written; removing the replaced run fails
        monkeypatch.setattr(object_commit, "_remove_dir", _fail)

    if step == "cleanup":
        run_score(spark, cfg, RUN_DATE)  # committed: a failed cleanup is only logged
        after = scores(cfg)
        assert layout.current_run_id(RUN_DATE) != first and len(after) == 200
        assert not np.allclose(after.to_numpy(), before.to_numpy())
        monkeypatch.undo()
        recover_date(cfg, RUN_DATE)  # the next recovery removes the replaced run
        partition = layout.partition_dir(RUN_DATE)
        assert isinstance(partition, Location)
        assert {n.split("/")[1] for n in keys(partition) if n.startswith("_runs/")} == {
            layout.current_run_id(RUN_DATE)
        }
        return

    with pytest.raises((StorageError, OSError)):
        run_score(spark, cfg, RUN_DATE)
    monkeypatch.undo()
    assert layout.current_run_id(RUN_DATE) == first
    assert scores(cfg).equals(before)  # every row of the previous run, nothing of the failed
    assert check_output(cfg, RUN_DATE).run_id == first
    partition = layout.partition_dir(RUN_DATE)
    assert isinstance(partition, Location)
    assert {n.split("/")[1] for n in keys(partition) if n.startswith("_runs/")} == {first}


def test_dataframe_engine_refuses_s3_without_the_connector(spark, s3_job, tmp_path) -> None:
    """The session has hadoop-aws (``make jars``); its FileSystem class made unloadable for
    this test stands for a session without the jar."""
    cfg = s3_job(engine="dataframe")
    write_input(cfg, customers(20), tmp_path)
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    impl = hadoop.get("fs.s3a.impl")
    hadoop.set("fs.s3a.impl", "org.example.NoSuchS3AFileSystem")
    try:
        with pytest.raises(StorageError, match=r"cannot open s3a://.*hadoop-aws.*jars/s3a") as err:
            run_score(spark, cfg, RUN_DATE)
    finally:
        hadoop.set("fs.s3a.impl", impl) if impl else hadoop.unset("fs.s3a.impl")
    assert err.value.exit_code == 7
    layout = predictions_layout(cfg.output.root, cfg.model.name, cfg.storage)
    assert layout.current_run_id(RUN_DATE) is None


def _answer(server: LiveServer, entity: int) -> tuple[float, str]:
    body = httpx.get(f"{server.url}/v1/models/served/predictions/{entity}").json()
    assert "values" in body, body
    return body["values"]["score"], body["as_of"]


def _until(check: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_publish_to_s3_and_the_api_serves_from_it(
    scored: Scored, s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = scored.cfg.model_dump(mode="json")
    data["publish"] = {**data["publish"], "root": f"s3://{bucket}/serving"}
    data["storage"] = {**s3.storage, "lease_dir": str(tmp_path / "leases")}
    cfg = JobConfig.model_validate(data)
    day0, day1 = scored.dates
    entity = next(iter(scored.expected[day1]))
    first = publish(cfg, day0)
    assert first.changed and str(first.path).startswith(f"s3://{bucket}/serving/served/")
    settings = ServeSettings(
        snapshot_uri=f"s3://{bucket}/serving",
        snapshot_cache=tmp_path / "cache",
        poll_interval_s=0.05,
        s3_endpoint_override=s3.endpoint,
        s3_scheme="http",
        s3_access_key="testing",
        s3_secret_key="testing",
    )
    with LiveServer(create_app(settings)) as server:
        assert _until(lambda: httpx.get(f"{server.url}/health").status_code == 200)
        score, as_of = _answer(server, entity)
        assert as_of == str(day0) and score == pytest.approx(
            scored.expected[day0][entity], abs=1e-12
        )

        # the pointer PUT fails: the new snapshot is uploaded, but nobody is pointed at it
        monkeypatch.setattr(remote, "_upload_pointer", _fail)
        with pytest.raises(OSError, match="injected"):
            publish(cfg, day1)
        monkeypatch.undo()
        time_passes = not _until(lambda: _answer(server, entity)[1] != str(day0), timeout_s=1.0)
        assert time_passes  # still the previous snapshot, whole

        publish(cfg, day1)
        assert _until(lambda: _answer(server, entity)[1] == str(day1))
        score, _ = _answer(server, entity)
        assert score == pytest.approx(scored.expected[day1][entity], abs=1e-12)

        back = rollback(cfg)
        assert back.snapshot_id == first.snapshot_id
        assert _until(lambda: _answer(server, entity)[1] == str(day0))


def test_swap_protocol_through_a_filesystem_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HDFS keeps the two-rename swap through pyarrow's ``move``: the same code, run here on
    pyarrow's LocalFileSystem (no libhdfs on this machine)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from batch_serving.tables import commit as swap
    from batch_serving.tables.layout import TableLayout

    root = location(str(tmp_path / "out"))
    layout = TableLayout(root, "predictions", "m")

    def staged(run_id: str, rows: int) -> Location:
        directory = layout.staging_dir(run_id)
        assert isinstance(directory, Location)
        directory.mkdir()
        table = pa.table({"id": list(range(rows))})
        pq.write_table(table, (directory / "part-0.parquet").path, filesystem=directory.fs)
        return directory

    assert swap.commit(layout, RUN_DATE, staged("r1", 3), "r1").rows == 3
    monkeypatch.setattr(swap, "_rename", _fail_second_rename())
    with pytest.raises(StorageError):
        swap.commit(layout, RUN_DATE, staged("r2", 5), "r2")
    monkeypatch.undo()
    partition = layout.partition_dir(RUN_DATE)
    assert pq.read_table(str(tmp_path / "out/predictions/m" / partition.name)).num_rows == 3
    assert swap.commit(layout, RUN_DATE, staged("r3", 7), "r3").rows == 7
    assert layout.trash_entries(RUN_DATE) == []


def _fail_second_rename() -> Callable[[Any, Any], None]:
    from batch_serving.tables import commit as swap

    calls: list[int] = []
    original = swap._move

    def rename(src: Any, dst: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("injected fault between the renames")
        original(src, dst)

    return rename


@pytest.mark.slow
def test_pointer_protocol_switches_the_hive_partition_location(
    spark, register, warehouse, job_config
) -> None:
    """``storage.commit: pointer`` on a local disk: the object-store protocol with Spark SQL
    through the metastore (s3a itself is not installable here)."""
    model, _ = builders.logreg_pipeline(labelled(400))
    name, _ = register(model, customers(50)[builders.FEATURES])
    cfg = job_config(
        name, catalog={"enabled": True}, storage={"commit": "pointer", "grace_period_s": 0}
    )
    table = f"predictions.{name}"
    for seed in (3, 8):  # a run, then a rerun with other feature values
        warehouse(customers(120, seed=seed))
        result = run_score(spark, cfg, RUN_DATE)
        sql = spark.sql(f"SELECT customer_id, score FROM {table} WHERE ds = DATE'{RUN_DATE}'")
        got = sql.toPandas().set_index("customer_id")["score"].sort_index()
        assert len(got) == 120
        assert np.max(np.abs(got.to_numpy() - scores(cfg).to_numpy())) <= 1e-12
        rows = spark.sql(f"DESCRIBE FORMATTED {table} PARTITION (ds = DATE'{RUN_DATE}')")
        where = next(r.data_type for r in rows.collect() if r.col_name == "Location")
        assert where.rstrip("/").endswith(f"_runs/{result.manifest.run_id}")


def test_remote_output_root_needs_a_metastore_location_for_the_catalog(job_config) -> None:
    from batch_serving.errors import ConfigError

    cfg = job_config("m", output={"root": "s3://b/out"}, catalog={"enabled": True})
    with pytest.raises(ConfigError, match=r"output\.root s3://b/out is remote"):
        _ = cfg.metastore_dir
    shared = {"enabled": True, "metastore_uri": "thrift://h:1"}
    assert job_config("m", output={"root": "s3://b/out"}, catalog=shared).metastore_dir
    local = job_config("m", output={"root": "s3://b/out"}, catalog={"metastore_dir": "/tmp/ms"})
    assert local.metastore_dir == Path("/tmp/ms")


def test_redis_publish_from_an_s3_serving_root_and_its_rerun(
    scored: Scored, s3: S3Server, bucket: str, redis_url: str, tmp_path: Path
) -> None:
    """Snapshots on S3 + answers in Redis: the Redis API serves the committed scores; a
    rerun of the same date (snapshot already on S3, only its manifest mirrored) still
    publishes, and rolling forward to the next date moves Redis with it."""
    data = scored.cfg.model_dump(mode="json")
    import redis

    own_db = f"{redis_url.rsplit('/', 1)[0]}/5"  # other tests change the shared db's snapshots
    redis.Redis.from_url(own_db).flushdb()
    data["publish"] = {
        **data["publish"],
        "root": f"s3://{bucket}/serving",
        "backends": ["embedded", "redis"],
        "redis_url": own_db,
    }
    data["storage"] = {**s3.storage, "lease_dir": str(tmp_path / "leases")}
    cfg = JobConfig.model_validate(data)
    day0, day1 = scored.dates
    first = publish(cfg, day0)
    assert first.changed and str(first.path).startswith(f"s3://{bucket}/serving/served/")
    again = publish(cfg, day0)  # idempotent: same snapshot, nothing switched
    assert again.snapshot_id == first.snapshot_id and not again.changed
    settings = ServeSettings(backend="redis", redis_url=own_db, poll_interval_s=0.05)
    entity = next(iter(scored.expected[day1]))
    with LiveServer(create_app(settings)) as server:
        assert _until(lambda: httpx.get(f"{server.url}/health").status_code == 200)
        score, as_of = _answer(server, entity)
        assert as_of == str(day0)
        assert score == pytest.approx(scored.expected[day0][entity], abs=1e-12)
        publish(cfg, day1)
        assert _until(lambda: _answer(server, entity)[1] == str(day1))
        assert _answer(server, entity)[0] == pytest.approx(scored.expected[day1][entity], abs=1e-12)
