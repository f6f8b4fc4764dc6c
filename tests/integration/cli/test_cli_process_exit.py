"""The process entry point (``batch_serving.cli.run``) ends the process without the
interpreter's teardown: every byte written reaches the pipe, exit handlers run, the exit code
is ``main``'s, and a thread still at work does not hold the process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import atexit, pathlib, sys, threading, time
from batch_serving.cli import run
marker = pathlib.Path(sys.argv[1])
atexit.register(lambda: marker.write_text("exit handlers ran"))
threading.Thread(target=time.sleep, args=(30,), name="idle").start()  # not a daemon
run(sys.argv[2:])
"""


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path, float]:
    marker = tmp_path / "marker.txt"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(marker), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, marker, time.perf_counter() - start


def test_output_complete_handlers_run_and_no_wait_for_threads(tmp_path: Path) -> None:
    done, marker, took = _run(tmp_path, "schema")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["title"] == "JobConfig"  # ~100 KB through the pipe, whole
    assert marker.read_text() == "exit handlers ran"
    assert took < 25  # a normal exit would wait 30 s for the idle thread


def test_the_exit_code_is_mains(tmp_path: Path) -> None:
    config = str(tmp_path / "missing.yaml")
    done, marker, took = _run(tmp_path, "score", "--config", config, "--run-date", "2026-01-02")
    assert done.returncode == 2, done.stderr
    assert "missing.yaml" in done.stderr and done.stderr.count("error:") == 1
    assert marker.is_file() and took < 25


def test_a_usage_error_exits_2_with_argparse_message(tmp_path: Path) -> None:
    done, marker, took = _run(tmp_path, "score", "--config", "x.yaml")
    assert done.returncode == 2
    assert "the following arguments are required: --run-date" in done.stderr
    assert marker.is_file() and took < 25


def test_python_dash_m_uses_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batch_serving.cli", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and json.loads(done.stdout)["title"] == "JobConfig"


UNCUT = """
import pathlib, sys, time
from batch_serving.cli import run
from batch_serving.runs.context import in_background
done = pathlib.Path(sys.argv[1])
in_background("metastore", lambda: (time.sleep(1.0), done.write_text("finished")), uncut=True)
in_background("other", lambda: time.sleep(30))  # nobody's business: not waited for
run(["schema"])
"""


def test_uncut_background_work_finishes_before_the_process_ends(tmp_path: Path) -> None:
    """The metastore's boot writes Derby's files: the exit waits for it, not for the rest."""
    done = tmp_path / "done.txt"
    start = time.perf_counter()
    ended = subprocess.run(
        [sys.executable, "-c", UNCUT, str(done)], capture_output=True, text=True, timeout=60
    )
    assert ended.returncode == 0, ended.stderr
    assert done.read_text() == "finished"
    assert time.perf_counter() - start < 25
