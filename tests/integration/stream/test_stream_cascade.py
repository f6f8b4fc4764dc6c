"""A cascade in ``batch-serving stream`` (the command, in its own process, over landing
files): every event's served score, ``answered_by`` and action equal a pandas evaluation of
the stages on the same rows; the check sample fills the last stage's struct on the sampled
rows only and changes nothing served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import builders
import numpy as np
import pandas as pd
import pyarrow as pa
import yaml
from conftest import customers, labelled
from test_stream import DDL, RULES, land, read_table

from batch_serving.config import JobConfig
from batch_serving.scoring.cascade import in_check_sample
from batch_serving.stream.layout import StreamLayout

SURE = "score <= 0.25 or score >= 0.75"


def stream_three_files(
    tmp_path: Path, cfg: JobConfig, rows: int
) -> tuple[list[pd.DataFrame], subprocess.CompletedProcess[str]]:
    """Lands three files of ``rows`` customers (distinct ids) and runs ``batch-serving
    stream --available-now`` on them in its own process, one file per micro-batch: the
    landed frames and the finished command."""
    config = tmp_path / "stream.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    frames = [
        customers(rows, seed=s).assign(customer_id=lambda f, s=s: f.customer_id + 1000 * s)
        for s in (1, 2, 3)
    ]
    for i, frame in enumerate(frames):
        land(tmp_path / "landing", f"events-{i}.parquet", frame)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "batch_serving.cli", "stream", "--config", str(config)]
    done = subprocess.run(
        [*command, "--available-now"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{3 * rows} rows scored, 0 quarantined" in done.stdout
    return frames, done


def test_stream_cascade_equals_the_pandas_evaluation_of_its_stages(
    job_config, tmp_path: Path, register
) -> None:
    small, small_oracle = builders.logreg_pipeline(labelled(300, seed=5))
    big, big_oracle = builders.logreg_pipeline(labelled(800))
    sample = customers(50)[builders.FEATURES]
    small_name, _ = register(small, sample)
    big_name, _ = register(big, sample)
    cfg = job_config(
        small_name,
        members={"big": {"name": big_name, "alias": "champion"}},
        cascade={
            "stages": [{"member": "champion", "answer_if": SURE}, {"member": "big"}],
            "check_sample": 0.3,
        },
        rules=RULES,
        stream={
            "path": str(tmp_path / "landing"),
            "columns": DDL,
            "trigger_seconds": 0.2,
            "max_files_per_trigger": 1,
        },
    )
    frames, _ = stream_three_files(tmp_path, cfg, 150)

    layout = StreamLayout.for_job(cfg)
    got = read_table(layout.predictions.table_dir).sort_values("customer_id")
    events = pd.concat(frames, ignore_index=True).sort_values("customer_id")
    assert got.customer_id.tolist() == events.customer_id.tolist()
    first = np.asarray(small_oracle(events)["score"])
    second = np.asarray(big_oracle(events)["score"])
    sure = (first <= 0.25) | (first >= 0.75)
    assert 0 < sure.sum() < len(events)
    expected = np.where(sure, first, second)
    assert np.max(np.abs(got.score.to_numpy() - expected)) <= 1e-12
    assert got.answered_by.tolist() == ["champion" if s else "big" for s in sure]
    assert got.action.tolist() == ["block" if s >= 0.5 else "allow" for s in expected]
    # the big struct: its answers, plus the check on the hash-picked rows champion answered
    picked = sure & in_check_sample([pa.array(events.customer_id)], 0.3)
    assert 0 < picked.sum() < sure.sum()
    big_scores = got["big"].map(lambda s: s["score"]).to_numpy(dtype=float)
    np.testing.assert_array_equal(~np.isnan(big_scores), ~sure | picked)
    scored = ~np.isnan(big_scores)
    assert np.max(np.abs(big_scores[scored] - second[scored])) <= 1e-12
