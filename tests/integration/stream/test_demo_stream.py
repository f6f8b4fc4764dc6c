"""``make demo-stream`` end to end at a tiny scale: its own broker and stream, events in ==
scored events out (read_committed, each once), scores equal to the model, nothing left running.

The demo runs as ``python -m batch_serving.demo_stream`` (what the Makefile target runs) on a
copy of the demo's job file under ``tmp_path/conf/jobs/``, so its registry and outputs resolve
under ``tmp_path``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from live import running_under

from batch_serving.kafka_broker import BROKER_LIB

REPO = Path(__file__).resolve().parents[3]


def demo_command(tmp_path: Path, *extra: str) -> list[str]:
    conf = tmp_path / "conf" / "jobs"
    conf.mkdir(parents=True)
    shutil.copy(REPO / "conf" / "jobs" / "churn.yaml", conf / "churn.yaml")
    return [
        sys.executable,
        "-m",
        "batch_serving.demo_stream",
        "--config",
        str(conf / "churn.yaml"),
        "--workdir",
        str(tmp_path / "demo"),
        "--train-rows",
        "1000",
        *extra,
    ]


@pytest.fixture(autouse=True)
def _broker_jars() -> None:
    if not any(BROKER_LIB.glob("kafka_2.13-*.jar")):
        pytest.skip(f"no Kafka broker jars in {BROKER_LIB}: run `make jars`")


def test_demo_stream_scores_every_event_once_and_stops_everything(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        demo_command(tmp_path, "--events", "300", "--rate", "300"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    produced = re.search(r"events in:\s+(\d+) produced: 20 to warm up, then (\d+)", out)
    scored = re.search(r"scored out:\s+(\d+) on churn-scores .* exactly once: yes", out)
    assert produced and scored, out
    assert int(produced[1]) == 320 and int(produced[2]) == 300
    assert int(scored[1]) == int(produced[1])  # events out == events in
    assert "(0 duplicates, 0 missing, 0 unexpected)" in out
    assert re.search(r"stream:\s+\d+ micro-batches, 320 scored, 0 quarantined", out), out
    assert re.search(r"latency .*300 timed events\): p50 [\d.]+ s", out), out
    assert re.search(r"score check: (\d+) of \1 sampled events equal", out), out
    assert out.count('"customer_id": ') == 3 and '"action": ' in out
    assert running_under(tmp_path) == []  # broker and stream (whole process groups) gone


@pytest.mark.slow
def test_demo_stream_interrupted_stops_broker_and_stream(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) once the stream runs: exit 130, nothing of it left running."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    demo = subprocess.Popen(
        demo_command(tmp_path, "--events", "100000", "--rate", "200"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        job = tmp_path / "demo" / "stream.yaml"
        while not any(str(job) in c for c in running_under(tmp_path)):
            assert demo.poll() is None and time.monotonic() < deadline, "stream never started"
            time.sleep(0.5)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(120) == 130
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert b"interrupted" in demo.communicate()[1]
    assert running_under(tmp_path) == []
