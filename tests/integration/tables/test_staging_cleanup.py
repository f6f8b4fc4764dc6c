"""Staging left by dead runs (issue #12.4): the next run of the model removes it; a concurrent
live run's staging is kept.

The end-to-end test kills a real ``batch-serving score`` process group with SIGKILL while its
Spark tasks hold half-written part files, with a second run of another date still scoring, then
reruns the killed date in process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import time
from pathlib import Path

import builders
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import RUN_DATE, customers
from test_concurrency import INPUTS, start_score, write_config

from batch_serving.runs.job import run_score
from batch_serving.runs.summary import summary_lines
from batch_serving.tables.file_lease import FileLease, lease_path, read_holder
from batch_serving.tables.layout import predictions_layout, quarantine_layout
from batch_serving.tables.staging import clean_staging, judge

OTHER_DATE = RUN_DATE - dt.timedelta(days=1)


def wait_for(condition, what: str, procs, timeout_s: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        for proc in procs:
            assert proc.poll() is None, (what, proc.communicate())
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def staged_files(staging: Path) -> list[Path]:
    return [p for p in staging.rglob("*") if p.is_file()] if staging.is_dir() else []


@pytest.mark.slow
def test_kill_9_mid_write_then_rerun_removes_dead_staging_keeps_live_run(
    spark, tmp_path, register, warehouse, job_config
) -> None:
    rows = customers(400)
    name, _ = register(builders.SlowScore(1.0, seconds=15.0), rows[INPUTS], pyfunc=True)
    register(builders.LinearScore(), rows[INPUTS], name=name, pyfunc=True, alias="fast")
    warehouse(rows, files=4)
    other_rows = customers(300, seed=5)
    warehouse(other_rows, run_date=OTHER_DATE, files=2)
    cfg = job_config(name, engine="arrow_direct")
    root = Path(cfg.output.root)
    staging_parent = root / "_staging" / "predictions" / name
    lease_dir = root / "_leases" / "predictions" / name

    doomed = start_score(write_config(tmp_path / "job.yaml", cfg))
    live = start_score(
        write_config(tmp_path / "job.yaml", cfg), "--run-date", str(OTHER_DATE)
    )  # the later --run-date wins
    procs = [doomed, live]
    try:
        lease = lease_dir / f"ds={RUN_DATE}.json"
        doomed_run = wait_for(lambda: read_holder(lease), "the doomed run's lease", procs).run_id
        live_lease = lease_dir / f"ds={OTHER_DATE}.json"
        live_run = wait_for(lambda: read_holder(live_lease), "the live run's lease", procs).run_id
        doomed_staging = staging_parent / doomed_run
        # mid-write: a Spark task has opened its part file and is scoring into it
        wait_for(lambda: staged_files(doomed_staging), "a half-written part file", procs)
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(30)
        assert doomed.returncode == -signal.SIGKILL
        left = staged_files(doomed_staging)
        assert left and any(p.name.endswith(".tmp") for p in left), left
        live_staging = staging_parent / live_run
        wait_for(lambda: staged_files(live_staging), "the live run's staging", [live])

        fast = job_config(name, engine="arrow_direct", model={"alias": "fast"})
        result = run_score(spark, fast, RUN_DATE)

        assert not doomed_staging.exists()
        assert not (root / "_staging" / "quarantine" / name / doomed_run).exists()
        assert {p.name for p in staging_parent.iterdir()} == {live_run}  # kept, still writing
        assert live.poll() is None
        removed = result.manifest.staging_removed
        assert len(removed) == 2 and all(doomed_run in line for line in removed), removed
        assert any("predictions" in line for line in removed)
        assert "cleanup   : removed staging of dead runs" in "\n".join(
            summary_lines(result.manifest)
        )
        written = json.loads((result.committed.path / "_manifest.json").read_text())
        assert written["staging_removed"] == removed

        table = pq.read_table(result.committed.path).to_pandas().sort_values("customer_id")
        assert table["customer_id"].tolist() == rows["customer_id"].tolist()  # each row once
        expected = 0.5 * rows["tenure_months"] + 2.0 * rows["support_calls"]
        np.testing.assert_allclose(table["prediction"].to_numpy(), expected.to_numpy(), atol=1e-9)
        assert result.committed.rows == 400

        _out, err = live.communicate(timeout=240)  # the live run was never disturbed
        assert live.returncode == 0, err
        other = pq.read_table(root / "predictions" / name / f"ds={OTHER_DATE}").to_pandas()
        assert sorted(other["customer_id"]) == sorted(other_rows["customer_id"])
        assert not staging_parent.exists() or not any(staging_parent.iterdir())
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def test_verdicts_live_lease_kept_dead_or_missing_lease_removed(tmp_path: Path) -> None:
    """Without Spark: real leases (one held by this live process, one left by a dead pid)."""
    pred, quar = predictions_layout(str(tmp_path), "m"), quarantine_layout(str(tmp_path), "m")
    live_lease = lease_path(tmp_path, "predictions", "m", pred.partition_name(RUN_DATE))
    dead_lease = lease_path(tmp_path, "predictions", "m", pred.partition_name(OTHER_DATE))
    for run in ("live-run", "dead-run", "no-lease-run", "me"):
        for layout in (pred, quar):
            (layout.staging_dir(run) / "sub").mkdir(parents=True)
            (layout.staging_dir(run) / "sub" / "part-00000.parquet").write_bytes(b"x")
    dead_lease.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).isoformat()
    dead_lease.write_text(
        json.dumps(
            {
                "run_id": "dead-run",
                "host": socket.gethostname(),
                "pid": 2**22 + 7,  # above pid_max on this kernel: no such process
                "acquired_at": now,
                "heartbeat_at": now,
            }
        )
    )
    with FileLease(live_lease, "live-run"):
        removed = clean_staging((pred, quar), pred.lease_holders, 3600, keep_run="me")
        assert pred.staging_dir("live-run").is_dir() and quar.staging_dir("live-run").is_dir()
    reasons = {(v.path.parent.parent.name, v.run_id): v.reason for v in removed}
    assert set(reasons) == {
        (t, r) for t in ("predictions", "quarantine") for r in ("dead-run", "no-lease-run")
    }
    assert "is not running on this host" in reasons[("predictions", "dead-run")]
    assert reasons[("quarantine", "no-lease-run")] == "dead: no lease names this run"
    for run in ("dead-run", "no-lease-run"):
        assert not pred.staging_dir(run).exists() and not quar.staging_dir(run).exists()
    assert pred.staging_dir("me").is_dir()  # the calling run's own staging


def test_age_decides_only_where_liveness_cannot_be_judged(tmp_path: Path) -> None:
    staged = tmp_path / "run-1"
    staged.mkdir()
    assert judge(staged, None, age_s=7200, max_age_s=3600).remove
    assert not judge(staged, None, age_s=60, max_age_s=3600).remove
    # a live lease keeps it whatever its age
    with FileLease(tmp_path / "lease.json", "run-1"):
        holder = read_holder(tmp_path / "lease.json")
        assert holder is not None
        assert not judge(staged, [holder], age_s=10**7, max_age_s=3600).remove
