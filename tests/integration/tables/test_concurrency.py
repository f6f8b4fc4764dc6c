"""Concurrent runs and crashes (issue #17): one writer per date, a manifest that always
describes the files beside it, and recovery of an interrupted commit before anything else."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import builders
import cloudpickle
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, RUN_DATE, customers, labelled
from mlflow import MlflowClient

from batch_serving.cli import main
from batch_serving.runs.after_commit import after_commit
from batch_serving.runs.context import RunContext
from batch_serving.runs.job import run_score
from batch_serving.tables.file_lease import read_holder
from batch_serving.tables.manifest import read_after_commit

cloudpickle.register_pickle_by_value(builders)
INPUTS = ["tenure_months", "support_calls"]
SCORE = [sys.executable, "-m", "batch_serving.cli", "score"]


def digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def write_config(path: Path, cfg) -> Path:  # type: ignore[no-untyped-def]
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def start_score(config: Path, *extra: str) -> subprocess.Popen[str]:
    """``batch-serving score`` as its own process (own JVM), as two cron jobs would run it."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.Popen(
        [*SCORE, "--config", str(config), "--run-date", str(RUN_DATE), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def consistent(partition: Path) -> bool | None:
    """Does the manifest describe the files beside it? None: nothing readable right now."""
    try:
        manifest = json.loads((partition / "_manifest.json").read_text())
        files = sorted(p for p in partition.glob("*.parquet"))
        versions = set(pq.read_table(files, columns=["model_version"]).column(0).to_pylist())
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except (OSError, ValueError):
        return None  # mid-swap: the directory moved while we read it
    return versions == {manifest["model"]["version"]} and rows == manifest["output"]["rows"]


@pytest.mark.slow
def test_concurrent_runs_of_one_date_have_one_writer(
    tmp_path, register, warehouse, job_config
) -> None:
    rows = customers(400)
    hold = tmp_path / "hold"  # while it exists, the first run stays mid-scoring (lease held)
    name, v1 = register(builders.SlowScore(1.0, hold=str(hold)), rows[INPUTS], pyfunc=True)
    _, v2 = register(
        builders.SlowScore(3.0), rows[INPUTS], name=name, pyfunc=True, alias="challenger"
    )
    warehouse(rows, files=4)
    cfg = job_config(name, engine="arrow_direct")
    config = write_config(tmp_path / "job.yaml", cfg)
    layout_root = Path(cfg.output.root)
    partition = layout_root / "predictions" / name / f"ds={RUN_DATE}"
    lease = layout_root / "_leases" / "predictions" / name / f"ds={RUN_DATE}.json"

    hold.touch()
    first = start_score(config)  # champion, v1
    deadline = time.monotonic() + 120
    while read_holder(lease) is None:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "first run never took the lease"
        time.sleep(0.05)
    holder = read_holder(lease)
    assert holder is not None and holder.pid == first.pid
    loser = start_score(config, "--model-alias", "challenger")
    waiter = start_score(config, "--model-alias", "challenger", "--wait")

    checks: list[bool] = []
    while any(p.poll() is None for p in (first, loser, waiter)):
        if loser.poll() is not None:
            hold.unlink(missing_ok=True)  # the loser has met the lease: let the first finish
        assert time.monotonic() < deadline + 180, "runs did not finish"
        seen = consistent(partition) if partition.exists() else None
        if seen is not None:
            checks.append(seen)
        time.sleep(0.1)
    outs = {n: p.communicate() for n, p in (("first", first), ("loser", loser), ("waiter", waiter))}

    assert first.returncode == 0, outs["first"]
    assert loser.returncode == 7, outs["loser"]
    message = outs["loser"][1]
    assert holder.run_id in message and f"pid {first.pid}" in message and "--wait" in message
    assert "Traceback" not in message
    assert waiter.returncode == 0, outs["waiter"]
    assert checks and all(checks)  # never a manifest that describes other data
    final = json.loads((partition / "_manifest.json").read_text())
    assert final["model"]["version"] == v2 and consistent(partition)
    assert f"{name} v{v2}" in outs["waiter"][0]
    runs_dir = layout_root / "_runs" / "predictions" / name
    records = [read_after_commit(d) for d in runs_dir.iterdir()]
    first_record = next(r for r in records if r is not None and r.run_id == holder.run_id)
    assert first_record.skipped is None  # its post-commit steps ran before the waiter committed
    assert not lease.exists()
    assert v1 != v2


def test_interrupted_commit_is_repaired_even_by_a_failing_run(
    spark, tmp_path, register, warehouse, job_config, capsys
) -> None:
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(300)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows)
    cfg = job_config(name)
    committed = run_score(spark, cfg, RUN_DATE).committed.path
    before = digest(committed)
    crash_between_renames(committed, cfg.output.root, name)
    assert not committed.exists()

    warehouse(rows.drop(columns=["contract"]))  # the next run fails validation (exit 4)
    config = write_config(tmp_path / "job.yaml", cfg)
    code = main(["score", "--config", str(config), "--run-date", str(RUN_DATE)])
    assert code == 4 and "missing columns ['contract']" in capsys.readouterr().err
    assert digest(committed) == before  # the previous partition is back


@pytest.mark.parametrize("command", ["check-output", "recover", "publish"])
def test_check_output_publish_and_recover_repair_first(
    spark, tmp_path, register, warehouse, job_config, capsys, command: str
) -> None:
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(200)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows)
    cfg = job_config(name, publish={"root": str(tmp_path / "serving")})
    committed = run_score(spark, cfg, RUN_DATE).committed.path
    before = digest(committed)
    crash_between_renames(committed, cfg.output.root, name)
    config = write_config(tmp_path / "job.yaml", cfg)

    args = [command, "--config", str(config)]
    code = main([*args, "--run-date", str(RUN_DATE)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert digest(committed) == before
    if command == "recover":
        assert f"{name} ds={RUN_DATE}: restored predictions" in out
        assert main(args) == 0  # nothing left to repair
        assert "no interrupted commits" in capsys.readouterr().out


def test_post_commit_steps_skip_a_partition_holding_another_run(
    spark, register, warehouse, job_config
) -> None:
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(200)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows)
    cfg = job_config(name, catalog={"enabled": True}, tracking={"log_runs": True})
    result = run_score(spark, cfg, RUN_DATE)
    manifest_before = (result.committed.path / "_manifest.json").read_bytes()

    stale = RunContext.start(cfg, RUN_DATE)  # a run whose data is no longer in the partition
    record = after_commit(spark, stale, result.manifest, result.committed)

    assert record.skipped is not None and result.manifest.run_id in record.skipped
    assert record.tables == [] and record.mlflow_run_id is None
    assert (result.committed.path / "_manifest.json").read_bytes() == manifest_before
    assert read_after_commit(Path(cfg.output.root) / "_runs" / "predictions" / name / stale.run_id)
    runs = MlflowClient(cfg.model.tracking_uri).search_runs(
        [
            MlflowClient(cfg.model.tracking_uri)
            .get_experiment_by_name(f"batch-serving/{cfg.job}")
            .experiment_id
        ],
        filter_string=f"tags.`batch_serving.run_id` = '{stale.run_id}'",
    )
    assert runs == []


def crash_between_renames(partition: Path, output_root: str, model: str) -> None:
    """The state a kill -9 between the commit's two renames leaves: the old partition moved
    to ``_trash``, the new one not yet in place."""
    trash = Path(output_root) / "_trash" / "predictions" / model / f"{partition.name}.crashed"
    trash.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(partition, trash)
