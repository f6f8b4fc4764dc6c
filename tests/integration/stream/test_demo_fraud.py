"""``make demo-stream`` (the fraud example live) end to end: trained and registered, every
produced transaction decided once, a burst card blocked, the API's live answer's aggregates
equal to the brute-force recomputation of that card's events at the request time, nothing
left running.

The demo runs as ``python -m batch_serving.fraud_demo`` (what the Makefile target runs) with
a copy of the demo's job file under ``tmp_path/conf/jobs/``, so its registry resolves under
``tmp_path``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from live import running_under
from windows_oracle import brute_force

from batch_serving.fraud_demo import FLUSH_CARD, demo_spec
from batch_serving.kafka_broker import BROKER_LIB

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _services() -> None:
    if not any(BROKER_LIB.glob("kafka_2.13-*.jar")):
        pytest.skip(f"no Kafka broker jars in {BROKER_LIB}: run `make jars`")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not on PATH: run `make system-deps`")


def run_demo(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "conf" / "jobs"
    conf.mkdir(parents=True)
    shutil.copy(REPO / "conf" / "jobs" / "churn.yaml", conf / "churn.yaml")
    command = [sys.executable, "-m", "batch_serving.fraud_demo", "--config"]
    command += [str(conf / "churn.yaml"), "--workdir", str(tmp_path / "demo")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def answers(out: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """kind (burst / normal) -> (card, the printed live answer)."""
    found = re.findall(r"GET /v1/models/fraud/predictions/(\S+) \((\w+)\): (\{.*\})", out)
    return {kind: (card, json.loads(body)) for card, kind, body in found}


def windows_at(events: pd.DataFrame, card: str, at: float) -> dict[str, Any]:
    """The card's windowed features for an event at ``at`` (epoch s), by brute force."""
    query = pd.DataFrame(
        {"event_id": [-1], "card_id": [card], "ts": [pd.Timestamp(at, unit="s").as_unit("us")]}
    )
    row = brute_force(events, query, demo_spec()).iloc[0]
    return {name: row[name] for name in demo_spec().names}


def test_demo_stream_blocks_the_burst_and_answers_live_aggregates(tmp_path: Path) -> None:
    done = run_demo(tmp_path)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert running_under(tmp_path) == []  # broker, redis-server, stream: process groups gone

    auc = re.search(r"held-out AUC .*: ([\d.]+) the amount alone, ([\d.]+) with windowed", out)
    assert auc and float(auc[2]) > float(auc[1]) + 0.3, out

    workdir = tmp_path / "demo"
    events = pd.read_csv(workdir / "transactions.csv", parse_dates=["ts"])
    decisions = pd.read_csv(workdir / "decisions.csv")
    assert FLUSH_CARD not in set(events["card_id"])
    assert sorted(decisions["txn_id"]) == sorted(events["txn_id"])  # each once, none else
    assert set(decisions["action"]) == {"block", "allow"}
    assert re.search(rf"{len(events)} transactions produced, {len(events)} decided; each ", out)

    shown = answers(out)
    burst_card, burst = shown["burst"]
    normal_card, normal = shown["normal"]
    burst_actions = decisions.loc[decisions["card_id"] == burst_card, "action"]
    assert (burst_actions == "block").any()
    assert burst["values"]["action"] == "block" and normal["values"]["action"] == "allow"

    asked = re.search(r"requests between ([\d.]+) and ([\d.]+)", out)
    assert asked, out
    for card, answer in ((burst_card, burst), (normal_card, normal)):
        assert answer["source"] == "live"
        early, late = (windows_at(events, card, float(t)) for t in (asked[1], asked[2]))
        assert early == late  # no event left a window while the requests ran
        assert answer["aggregates"] == pytest.approx(early, abs=1e-9), card
        newest = events.loc[events["card_id"] == card, "ts"].max()
        assert answer["features_as_of"] == newest.tz_localize("UTC").isoformat()
    assert burst["aggregates"]["amount_count_10m"] >= 6  # the burst is in its 10m window
