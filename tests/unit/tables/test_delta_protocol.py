"""#23.2: the Delta commit protocol answers the same calls as the directory protocols; a date's
replace is one transaction that adds the run's files as they are (no Spark here; delta-rs reads
the table back at each version)."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from test_storage_seams import manifest

from batch_serving.config import StorageConfig
from batch_serving.errors import StorageError
from batch_serving.storage import Location, location
from batch_serving.storage.files import count_rows
from batch_serving.tables import delta_commit
from batch_serving.tables.commit import commit, discard, recover
from batch_serving.tables.delta_commit import DeltaCommit, committed_version
from batch_serving.tables.layout import TableLayout, predictions_layout
from batch_serving.tables.manifest import read_manifest, write_manifest

DAY = dt.date(2026, 11, 22)
OTHER = dt.date(2026, 11, 21)


def stage(directory: Location, ids: list[int], run_id: str) -> Location:
    directory.mkdir()
    part = directory / "part-0.parquet"  # on any filesystem (the S3 tests stage with it too)
    pq.write_table(
        pa.table({"id": ids, "score": [i / 10 for i in ids]}), part.path, filesystem=part.fs
    )
    write_manifest(directory, manifest(run_id, len(ids)))
    return directory


def delta(tmp_path: Path) -> TableLayout:
    return predictions_layout(str(tmp_path / "out"), "m", StorageConfig(), "delta")


def rows_at(layout: TableLayout, version: int | None = None) -> list[tuple[int, str]]:
    table = delta_commit.open_table(layout.table_dir, version).to_pyarrow_table()
    return sorted(zip(table["id"].to_pylist(), map(str, table["ds"].to_pylist()), strict=True))


def test_a_rerun_replaces_its_date_in_one_new_version_and_time_travel_keeps_the_old(
    tmp_path: Path,
) -> None:
    layout = delta(tmp_path)
    assert isinstance(layout.protocol, DeltaCommit) and layout.protocol.table_format == "delta"
    first = commit(layout, DAY, stage(layout.staging_for(DAY, "r1"), [1, 2, 3], "r1"), "r1")
    other = commit(layout, OTHER, stage(layout.staging_for(OTHER, "o1"), [9], "o1"), "o1")
    assert (first.rows, first.files, first.version, other.version) == (3, 1, 0, 1)
    assert layout.current_run_id(DAY) == "r1" and first.path == layout.committed_dir(DAY)
    assert layout.committed_dates() == [OTHER.isoformat(), DAY.isoformat()]

    second_staged = stage(layout.staging_for(DAY, "r2"), [4, 5], "r2")
    second = commit(layout, DAY, second_staged, "r2")
    discard(layout, second_staged)  # the committed run directory stays
    assert second.version == 2 and layout.current_run_id(DAY) == "r2"
    assert count_rows(layout.committed_dir(DAY)) == 2
    named = read_manifest(layout.committed_dir(DAY))
    assert named is not None and (named.run_id, named.output.table_version) == ("r2", 2)
    assert rows_at(layout) == [(4, str(DAY)), (5, str(DAY)), (9, str(OTHER))]
    assert rows_at(layout, 1) == [(1, str(DAY)), (2, str(DAY)), (3, str(DAY)), (9, str(OTHER))]
    assert committed_version(layout.table_dir, DAY) == 2
    assert committed_version(layout.table_dir, OTHER) == 1
    assert recover(layout, DAY) is False
    # the replaced run's files stay for time travel; a run that never committed goes
    failed = stage(layout.staging_for(DAY, "r3"), [7], "r3")
    discard(layout, failed)
    assert not failed.exists() and (layout.partition_dir(DAY) / "_runs" / "r1").is_dir()


def test_readers_without_a_job_config_find_the_delta_table(tmp_path: Path) -> None:
    layout = delta(tmp_path)
    commit(layout, DAY, stage(layout.staging_for(DAY, "r1"), [1], "r1"), "r1")
    found = predictions_layout(str(tmp_path / "out"), "m")  # format not given
    assert isinstance(found.protocol, DeltaCommit) and found.current_run_id(DAY) == "r1"
    parquet = predictions_layout(str(tmp_path / "elsewhere"), "m")
    assert parquet.protocol.table_format == "parquet"


def test_a_run_without_quarantined_rows_empties_its_date_and_keeps_other_dates(
    tmp_path: Path,
) -> None:
    layout = delta(tmp_path)
    empty = layout.staging_for(DAY, "r0")
    empty.mkdir()
    assert commit(layout, DAY, empty, "r0").version is None  # no table yet, nothing to write
    commit(layout, DAY, stage(layout.staging_for(DAY, "r1"), [1, 2], "r1"), "r1")
    commit(layout, OTHER, stage(layout.staging_for(OTHER, "o1"), [3], "o1"), "o1")
    empty = layout.staging_for(DAY, "r2")
    empty.mkdir()
    assert commit(layout, DAY, empty, "r2").version == 2
    assert rows_at(layout) == [(3, str(OTHER))] and layout.current_run_id(DAY) is None


def test_a_commit_delta_refuses_is_a_storage_error_naming_the_table_and_changes_nothing(
    tmp_path: Path,
) -> None:
    layout = delta(tmp_path)
    commit(layout, DAY, stage(layout.staging_for(DAY, "r1"), [1], "r1"), "r1")
    boom = RuntimeError("CommitFailedError: concurrent transaction deleted the same data")
    staged = stage(layout.staging_for(DAY, "r2"), [2], "r2")
    with (
        mock.patch.object(DeltaTable, "create_write_transaction", side_effect=boom),
        pytest.raises(StorageError, match=r"Delta commit of .*predictions/m ds=2026-11-22"),
    ):
        commit(layout, DAY, staged, "r2")
    assert DeltaTable(str(layout.table_dir)).version() == 0 and layout.current_run_id(DAY) == "r1"
    assert rows_at(layout) == [(1, str(DAY))]


def test_s3_tables_get_the_jobs_endpoint_and_keys_and_other_stores_are_refused_by_name() -> None:
    storage = StorageConfig.model_validate(
        {
            "s3": {
                "endpoint_override": "127.0.0.1:9",
                "scheme": "http",
                "region": "eu-west-1",
                "access_key": "ak",
                "secret_key": "sk",
            }
        }
    )
    table = location("s3a://bucket/out/predictions/m", storage)
    assert delta_commit._uri(table) == "s3://bucket/out/predictions/m"
    assert delta_commit.storage_options(table) == {
        "AWS_REGION": "eu-west-1",
        "aws_conditional_put": "etag",  # each log entry a put-if-absent: no lock table
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "ak",
        "AWS_SECRET_ACCESS_KEY": "sk",
    }
    aws = location("s3://bucket/t", StorageConfig())  # AWS itself: its credential chain
    assert delta_commit.storage_options(aws) == {
        "AWS_REGION": "us-east-1",
        "aws_conditional_put": "etag",
    }
    assert delta_commit.storage_options(location("/tmp/t")) is None
    with pytest.raises(StorageError, match="local paths and s3:// only, not gs://bucket/out"):
        delta_commit._uri(location("gs://bucket/out/predictions/m", StorageConfig()))


def test_runs_of_different_dates_commit_at_once_without_a_conflict(tmp_path: Path) -> None:
    """Each date's lease is its own, so runs of other dates commit concurrently (a backfill);
    delta-rs reports those as conflicts, which the commit redoes on the newer version."""
    commit_concurrently(delta(tmp_path), dates=4, attempts=3)


def commit_concurrently(layout: TableLayout, dates: int, attempts: int) -> None:
    """``attempts`` rounds of one thread per date committing at once: every commit is a
    version of its own (none lost) and each date holds its last round's rows."""
    days = [DAY - dt.timedelta(days=i) for i in range(dates)]
    errors: list[BaseException] = []

    def run(day: dt.date, attempt: int) -> None:
        run_id = f"r{day.day}-{attempt}"
        try:
            commit(
                layout,
                day,
                stage(layout.staging_for(day, run_id), [day.day, attempt], run_id),
                run_id,
            )
        except BaseException as exc:
            errors.append(exc)

    for attempt in range(attempts):
        threads = [threading.Thread(target=run, args=(day, attempt)) for day in days]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    last = attempts - 1
    assert delta_commit.open_table(layout.table_dir).version() == dates * attempts - 1
    assert [layout.current_run_id(day) for day in days] == [f"r{d.day}-{last}" for d in days]
    assert rows_at(layout) == sorted((i, str(d)) for d in days for i in (d.day, last))


def stage_table(directory: Location, table: pa.Table, run_id: str) -> Location:
    directory.mkdir()
    pq.write_table(table, directory / "part-0.parquet")
    write_manifest(directory, manifest(run_id, table.num_rows))
    return directory


def test_the_table_keeps_every_dates_columns_and_refuses_a_changed_type_by_name(
    tmp_path: Path,
) -> None:
    layout = delta(tmp_path)
    wide = pa.table({"id": [1], "score": [0.1], "extra": ["x"]})
    commit(layout, OTHER, stage_table(layout.staging_for(OTHER, "o1"), wide, "o1"), "o1")
    narrow = pa.table({"id": [2], "score": [0.2]})  # e.g. another model version
    commit(layout, DAY, stage_table(layout.staging_for(DAY, "r1"), narrow, "r1"), "r1")
    table = DeltaTable(str(layout.table_dir)).to_pyarrow_table().sort_by("id")
    assert table.column_names == ["id", "score", "extra", "ds"]
    assert table["extra"].to_pylist() == ["x", None]

    retyped = pa.table({"id": [3], "score": ["high"]})
    staged = stage_table(layout.staging_for(DAY, "r2"), retyped, "r2")
    with pytest.raises(StorageError, match="column 'score' is string in this run but double"):
        commit(layout, DAY, staged, "r2")
    assert layout.current_run_id(DAY) == "r1"
