"""The windowed stream killed (-9, whole process group) in the middle of a micro-batch, then
restarted on the same checkpoint: each event is scored exactly once, with the features of
every earlier accepted event (the state comes back from the RocksDB checkpoint, not empty),
and the events behind the watermark stay dropped and are counted once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml
from windows_landing import COLUMNS, FLUSH_CARD, land
from windows_oracle import WINDOWS, brute_force, spec

from batch_serving.config import JobConfig
from batch_serving.features.offline import feature_mismatches
from batch_serving.stream.layout import StreamLayout

INPUTS = ["amount_count_1h", "amount_sum_10m"]
EXACT = [f.name for f in spec().features if f.function != "mean"]  # counts, sums, min, max


class SlowWindowScore(mlflow.pyfunc.PythonModel):
    """A model of two windowed features, slow enough (per call) that a kill lands inside a
    batch: score = count_1h + sum_10m / 100."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        time.sleep(1.5)
        return model_input["amount_count_1h"] + model_input["amount_sum_10m"] / 100.0


def committed_rows(layout: StreamLayout) -> pd.DataFrame:
    files = layout.committed_files(layout.predictions)
    if not files:
        return pd.DataFrame()
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def in_flight(proc: subprocess.Popen[bytes], layout: StreamLayout, timeout_s: float = 300) -> int:
    """Wait until a batch that scored events is committed and the next one is under way; the
    id of the one under way."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "stream exited early"
        done = layout.committed_batches()
        scored = done and not committed_rows(layout).empty
        if scored and (layout.checkpoint / "offsets" / str(done[-1] + 1)).exists():
            return done[-1] + 1
        time.sleep(0.05)
    raise AssertionError("no batch in flight after a scored one")


def late_counted(logs: list[Path]) -> dict[int, int]:
    """Late events per batch id, from the processes' logs (a batch reported twice, killed
    and replayed, must report the same number)."""
    counted: dict[int, int] = {}
    for log in logs:
        for batch, late in re.findall(r"batch (\d+): (\d+) late events dropped", log.read_text()):
            assert counted.setdefault(int(batch), int(late)) == int(late)
    return counted


def test_kill9_mid_batch_then_restart_scores_each_event_once_with_restored_state(
    job_config: Callable[..., JobConfig],
    register: Callable[..., tuple[str, int]],
    tmp_path: Path,
) -> None:
    landed = land(tmp_path / "landing")
    s = spec()
    sample = pd.DataFrame({"amount_count_1h": [1, 2], "amount_sum_10m": [1.0, 2.0]})
    name, _ = register(SlowWindowScore(), sample, pyfunc=True)
    stream = {
        "path": str(tmp_path / "landing"),
        "format": "json",
        "columns": COLUMNS,
        "event_time_column": "ts",
        "max_files_per_trigger": 1,
        "trigger_seconds": 0.2,
    }
    # the features ride along as id columns: the table shows what each event was scored with
    ids = ["event_id", "card_id", "ts", *s.names]
    cfg = job_config(name, entity_columns=ids, stream=stream, windows=WINDOWS)
    config = tmp_path / "stream.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    layout = StreamLayout.for_job(cfg)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    logs: list[Path] = []

    def start(*extra: str) -> subprocess.Popen[bytes]:
        logs.append(tmp_path / f"stream-{len(logs)}.log")
        return subprocess.Popen(
            [sys.executable, "-m", "batch_serving.cli", "stream", "--config", str(config), *extra],
            env=env,
            stdout=logs[-1].open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    first = start()
    try:
        killed = in_flight(first, layout)
        before = committed_rows(layout)
        time.sleep(0.5)  # inside the model's 1.5 s predict
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        assert not layout.marker(killed).exists(), "the kill came after the batch committed"

        again = start("--available-now")
        assert again.wait(300) == 0, logs[-1].read_text()[-3000:]
    finally:
        for proc in (first, locals().get("again")):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    got = committed_rows(layout)
    assert not layout.quarantine.table_dir.exists() or not layout.committed_files(
        layout.quarantine
    ), "rows quarantined"
    released = got[got["card_id"] != FLUSH_CARD]
    assert released["event_id"].value_counts().max() == 1  # none twice
    assert sorted(released["event_id"]) == sorted(landed.accepted["event_id"])  # none lost
    assert not set(got["event_id"]) & set(landed.late["event_id"])  # late ones never mixed in
    # the batches scored before the kill, and those after the restart, both hold events
    assert 0 < len(before) < len(released)
    expected = brute_force(landed.accepted, landed.accepted, s)
    assert feature_mismatches(released, expected, s, ["event_id"]).empty  # means: 1e-9
    joined = released.merge(expected, on="event_id", suffixes=("", "_want"), validate="1:1")
    for name_ in EXACT:
        assert joined[name_].fillna(-1.0).equals(joined[f"{name_}_want"].fillna(-1.0)), name_
    # the restart had state to restore: events it scored have events scored before the kill
    # in their hour (an empty state would have given them lower counts: a mismatch above)
    later = landed.accepted[~landed.accepted["event_id"].isin(before["event_id"])]
    earlier = landed.accepted[landed.accepted["event_id"].isin(before["event_id"])]
    assert (brute_force(earlier, later, s)["amount_count_1h"] > 0).any()
    want = released["amount_count_1h"] + released["amount_sum_10m"] / 100.0
    np.testing.assert_allclose(released["prediction"], want, rtol=1e-12)
    assert sum(late_counted(logs).values()) == len(landed.late) == 12
