"""Issue #31.8: the feature snapshot holds exactly the input the run scored.

A run records the data files it read (name, size, mtime) in its manifest; ``publish`` with
``publish.features`` builds the feature snapshot from those files only. A file that arrived
after the run is left out (the batch never scored its ids, so the live path must not answer
them from features the batch never saw); a recorded file that changed or vanished makes the
publish refuse (PublishError, exit 8) naming the file."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import builders
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, RUN_DATE, customers, labelled

from batch_serving.errors import PublishError
from batch_serving.runs.job import run_score
from batch_serving.serving.features import FEATURES_DIR, scored_files
from batch_serving.serving.format import KEY, SNAPSHOT_FILE
from batch_serving.serving.publish import publish
from batch_serving.tables.manifest import InputFile, InputSection, RunManifest

PARTITION = f"ds={RUN_DATE.isoformat()}"


def feature_ids(snapshot_dir: Path) -> set[int]:
    with pa.memory_map(str(snapshot_dir / FEATURES_DIR / SNAPSHOT_FILE)) as source:
        return set(ipc.open_file(source).read_all().column(KEY).to_pylist())


def recorded(partition: Path) -> RunManifest:
    """A manifest as a run leaves it, reduced to what the feature snapshot reads."""
    files = [InputFile.of(partition, f) for f in sorted(partition.glob("*.parquet"))]
    return RunManifest.model_construct(
        run_id="r1",
        run_date=RUN_DATE.isoformat(),
        input=InputSection(path=str(partition), rows=0, files=files),
    )


@pytest.mark.slow
def test_publish_features_from_exactly_the_files_the_run_read(
    spark, register, warehouse, job_config, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(120)
    name, _ = register(model, rows[builders.FEATURES])
    partition = warehouse(rows, files=2) / PARTITION
    cfg = job_config(name)
    manifest = run_score(spark, cfg, RUN_DATE).manifest

    names = sorted(p.name for p in partition.glob("*.parquet"))
    assert manifest.input.files is not None
    assert [f.name for f in manifest.input.files] == names
    assert [f.bytes for f in manifest.input.files] == [
        (partition / n).stat().st_size for n in names
    ]
    scored_ids = set(rows["customer_id"].tolist())
    late = customers(30, seed=99).assign(customer_id=lambda f: f["customer_id"] + 100_000)
    pq.write_table(pa.Table.from_pandas(late, preserve_index=False), partition / "late.parquet")

    def config(root: str) -> object:
        data = cfg.model_dump(mode="json")
        data["publish"] = {**data["publish"], "root": str(tmp_path / root), "features": True}
        return type(cfg).model_validate(data)

    done = publish(config("a"), RUN_DATE)  # type: ignore[arg-type]

    assert feature_ids(done.path) == scored_ids  # the late ids are not live-scorable
    first = partition / names[0]
    extra = pq.read_table(first)
    pq.write_table(pa.concat_tables([extra, extra.slice(0, 1)]), first)  # rewritten after score
    with pytest.raises(PublishError, match=rf"input file {first} changed after run"):
        publish(config("b"), RUN_DATE)  # type: ignore[arg-type]
    assert not (tmp_path / "b" / name / "snapshots").exists() or not any(
        (tmp_path / "b" / name / "snapshots").iterdir()
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config("c").model_dump(mode="json")))  # type: ignore[attr-defined]
    cli = [sys.executable, "jobs/publish.py", "--config", str(path), "--run-date", str(RUN_DATE)]
    refused = subprocess.run(cli, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 8, refused.stderr
    assert first.name in refused.stderr


def test_a_late_file_is_left_out(job_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    partition = tmp_path / PARTITION
    partition.mkdir()
    pq.write_table(pa.table({"customer_id": [1, 2]}), partition / "part-0.parquet")
    manifest = recorded(partition)
    pq.write_table(pa.table({"customer_id": [3]}), partition / "part-1.parquet")

    files = scored_files(job_config("m"), manifest)

    assert [Path(str(f)).name for f in files] == ["part-0.parquet"]


def test_a_touched_file_is_refused_by_name(job_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    partition = tmp_path / PARTITION
    partition.mkdir()
    pq.write_table(pa.table({"customer_id": [1, 2]}), partition / "part-0.parquet")
    manifest = recorded(partition)
    later = dt.datetime(2030, 1, 1).timestamp()
    os.utime(partition / "part-0.parquet", (later, later))  # same bytes, new mtime

    with pytest.raises(PublishError, match=r"part-0.parquet changed after run r1 scored it"):
        scored_files(job_config("m"), manifest)


def test_a_vanished_file_is_refused_by_name(job_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    partition = tmp_path / PARTITION
    partition.mkdir()
    pq.write_table(pa.table({"customer_id": [1]}), partition / "part-0.parquet")
    manifest = recorded(partition)
    (partition / "part-0.parquet").unlink()

    with pytest.raises(PublishError, match=r"part-0.parquet that run r1 scored is gone"):
        scored_files(job_config("m"), manifest)


def test_a_run_that_did_not_record_its_files_is_refused(job_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest = RunManifest.model_construct(
        run_id="r0", run_date=RUN_DATE.isoformat(), input=InputSection(path=str(tmp_path), rows=1)
    )
    with pytest.raises(PublishError, match=r"run r0's manifest does not record which files"):
        scored_files(job_config("m"), manifest)
