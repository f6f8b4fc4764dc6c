"""A cascade's evidence in ``batch-serving stream`` (the command, in its own process, over
three landed files, one micro-batch each): each batch marker's rows per stage equal a pandas
evaluation of the stages on that batch's rows and sum to its scored rows; the check's flips,
agreement and mean |score diff| equal a direct computation on the same hash-picked rows;
``metrics.prom`` holds the sums over all batches and the log one line per batch and one since
the start; the served scores are those of the stages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import builders
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import customers, labelled
from test_stream import DDL, RULES, read_table
from test_stream_cascade import SURE, stream_three_files

from batch_serving.scoring.cascade import in_check_sample
from batch_serving.stream.layout import StreamLayout

SAMPLE = 0.3


Oracle = Callable[[pd.DataFrame], Any]


def _expected(rows: pd.DataFrame, small_oracle: Oracle, big_oracle: Oracle) -> dict[str, Any]:
    """The stages and the check on ``rows``, computed directly with the two sklearn models."""
    first = np.asarray(small_oracle(rows)["score"])
    second = np.asarray(big_oracle(rows)["score"])
    sure = (first <= 0.25) | (first >= 0.75)
    picked = sure & in_check_sample([pa.array(rows.customer_id)], SAMPLE)
    flips = int(((first[picked] >= 0.5) != (second[picked] >= 0.5)).sum())
    return {
        "rows": len(rows),
        "sure": int(sure.sum()),
        "checked": int(picked.sum()),
        "flips": flips,
        "mean_abs_diff": float(np.abs(first[picked] - second[picked]).mean()),
        "served": np.where(sure, first, second),
    }


def _key(metric: str, model: str, **labels: str) -> str:
    text = ",".join(f'{k}="{v}"' for k, v in {"model": model, **labels}.items())
    return f"batch_serving_stream_cascade_{metric}{{{text}}}"


def test_stream_reports_the_cascade_per_batch_and_since_start(
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
            "check_sample": SAMPLE,
        },
        rules=RULES,
        stream={
            "path": str(tmp_path / "landing"),
            "columns": DDL,
            "trigger_seconds": 0.2,
            "max_files_per_trigger": 1,
        },
    )
    frames, done = stream_three_files(tmp_path, cfg, 200)

    layout = StreamLayout.for_job(cfg)
    got = read_table(layout.predictions.table_dir)
    events = pd.concat(frames, ignore_index=True).set_index("customer_id")
    batches = sorted(layout.committed_batches())
    assert len(batches) == 3
    for batch_id in batches:
        marker = json.loads(layout.marker(batch_id).read_text())
        ids = got.customer_id[got.batch_id == batch_id]
        want = _expected(events.loc[ids].reset_index(), small_oracle, big_oracle)
        champion, last = marker["cascade"]
        assert (champion["member"], last["member"]) == ("champion", "big")
        assert champion["answered"] + last["answered"] == marker["scored_rows"] == want["rows"]
        assert (champion["seen"], champion["answered"]) == (want["rows"], want["sure"])
        assert champion["band"] == last["seen"] == last["answered"] == want["rows"] - want["sure"]
        assert (champion["checked"], champion["flips"]) == (want["checked"], want["flips"])
        assert want["checked"] > 0
        assert champion["agreement"] == pytest.approx(1 - want["flips"] / want["checked"])
        assert champion["mean_abs_diff"] == pytest.approx(want["mean_abs_diff"], abs=1e-12)
        assert champion["decision"] == "action" and last["checked"] == 0

    # the scores are the stages' own (the evidence changes nothing served)
    everything = _expected(events.loc[got.customer_id].reset_index(), small_oracle, big_oracle)
    assert np.max(np.abs(got.score.to_numpy() - everything["served"])) <= 1e-12
    assert everything["flips"] > 0

    prom = {
        key: float(value)
        for key, value in (
            line.rsplit(" ", 1)
            for line in layout.metrics_file.read_text().splitlines()
            if line.startswith("batch_serving_stream_cascade_")
        )
    }
    model, sure, total = cfg.model.name, everything["sure"], everything
    assert prom[_key("rows_total", model, stage="champion", outcome="seen")] == 600
    assert prom[_key("rows_total", model, stage="champion", outcome="answered")] == sure
    assert prom[_key("rows_total", model, stage="champion", outcome="band")] == 600 - sure
    assert prom[_key("rows_total", model, stage="big", outcome="answered")] == 600 - sure
    checks = {
        name: prom[_key(f"check_{name}", model, stage="champion")]
        for name in ("rows_total", "flips_total", "agreement", "mean_abs_score_diff")
    }
    assert checks["rows_total"] == total["checked"]
    assert checks["flips_total"] == total["flips"]
    agreement = 1 - total["flips"] / total["checked"]
    assert checks["agreement"] == pytest.approx(agreement, rel=1e-5)
    assert checks["mean_abs_score_diff"] == pytest.approx(total["mean_abs_diff"], rel=1e-5)

    logged = done.stdout + done.stderr
    assert sum(f"batch {b} cascade: champion saw 200" in logged for b in batches) == 3
    since = [line for line in logged.splitlines() if "cascade since start:" in line]
    assert len(since) == 3
    assert f"champion saw 600, answered {everything['sure']}" in since[-1]
    assert f"action flips {everything['flips']} " in since[-1]
