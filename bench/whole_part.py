"""``score_bench.py --only whole`` (issue #30): what a whole run costs, process and all.

Part "whole": the demo's nightly job (champion + challenger shadow + rules + GX gates + drift +
SQL catalog + MLflow record, conf/jobs/churn.yaml) run as ``batch-serving score``, a process
of its own, vs ``whole_inprocess.py``: one plain Python process doing the same scoring work
(pin both aliases, load both models, read, score, rules, write). Interleaved rounds after a
warm-up round, median; wall time to the command's exit, the time until every process it
started (the JVM) is gone, and CPU of the whole process tree. The score runs' timelines
(``_after_commit.json``) give the step table. Targets: <= 2.0x wall at 200k, <= 1.2x at 2M.

Part "backfill": ``batch-serving backfill`` of 10 dates (one process, one Spark session, one
metastore) vs 10 ``batch-serving score`` processes for the same dates, after a warm-up run.
Target: the backfill >= 3x faster. Always 200k rows a date (10 x 2M would measure the data).

Each scale has its own project under ``.bench_data/whole/<scale>`` (a copy of the demo's job
file, its warehouse, registry, metastore and output), so reruns reuse data and models.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO_JOB = ROOT / "conf" / "jobs" / "churn.yaml"
CLI = [sys.executable, "-m", "batch_serving.cli"]
INPROCESS = [sys.executable, str(Path(__file__).with_name("whole_inprocess.py"))]
RUN_DATE = dt.date(2026, 1, 10)
BACKFILL_DAYS = 10
BACKFILL_ROWS = 200_000
TRAIN_ROWS = 50_000  # as ``make demo``
TARGETS = {"200k": 2.0, "2M": 1.2}  # whole job / in-process, wall
BACKFILL_TARGET = 3.0  # 10 single runs / one backfill of 10 dates
PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Measured:
    """One process run: wall to its exit, to the exit of every descendant, CPU of them all."""

    wall: float
    tree: float
    cpu: float
    record: dict[str, Any] = field(default_factory=dict)  # ``--json`` output, if any


def project(home: Path, rows: int, dates: list[dt.date]) -> Path:
    """The demo's job file copied into ``home/conf/jobs`` (its relative paths then resolve
    under ``home``), with its warehouse dates and both demo models registered."""
    from batch_serving import demo
    from batch_serving.config import load_config

    config = home / "conf" / "jobs" / DEMO_JOB.name
    config.parent.mkdir(parents=True, exist_ok=True)
    if not config.is_file():
        config.write_text(DEMO_JOB.read_text())
    cfg = load_config(config)
    demo.ensure_warehouse(cfg, dates, rows)
    demo.ensure_models(cfg, train_rows=min(rows, TRAIN_ROWS))
    return config


def run_process(command: list[str], log: Path) -> Measured:
    """Run ``command`` (stdout kept, stderr to ``log``). This process is a child subreaper, so
    a JVM outliving the command is re-parented here: it is waited for, and its CPU counted."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as out, log.open("ab") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT)
        code = proc.wait()
        wall = time.perf_counter() - start
        _reap_all()
        tree = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited {code}; see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    record = json.loads(text) if text.lstrip().startswith("{") else {}
    return Measured(wall, tree, cpu, record)


def _reap_all() -> None:
    """Wait for every descendant re-parented to this process (the JVM after its Python): the
    ones in this process group, so a service started in its own session (a Connect server)
    is not waited for."""
    while True:
        try:
            os.waitpid(0, 0)
        except ChildProcessError:
            return


def score_command(config: Path, run_date: dt.date) -> list[str]:
    return [*CLI, "score", "--config", str(config), "--run-date", str(run_date), "--json"]


def measure_whole(scale: str, rows: int, reps: int, data: Path) -> dict[str, Any]:
    home = data / "whole" / scale
    config = project(home, rows, [RUN_DATE - dt.timedelta(days=1), RUN_DATE])
    log = home / "runs.log"
    methods = {
        "whole job": lambda: run_process(score_command(config, RUN_DATE), log),
        "in-process": lambda: run_process(
            [
                *INPROCESS,
                "--config",
                str(config),
                "--run-date",
                str(RUN_DATE),
                "--out",
                str(home / "inprocess_out"),
            ],
            log,
        ),
    }
    print(f"[whole] warm-up (first run: metastore, previous date) at {rows:,} rows", flush=True)
    run_process(score_command(config, RUN_DATE - dt.timedelta(days=1)), log)
    for fn in methods.values():
        fn()
    got: dict[str, list[Measured]] = {name: [] for name in methods}
    for round_ in range(reps):
        order = list(methods.items())
        for name, fn in order if round_ % 2 == 0 else reversed(order):
            print(f"[whole] {name} round {round_ + 1}/{reps} ...", flush=True)
            got[name].append(fn())
    return {
        "scale": scale,
        "rows": rows,
        "reps": reps,
        "methods": {name: _summary(runs) for name, runs in got.items()},
        "steps": _step_medians(got["whole job"]),
        "timeline": _median_timeline(got["whole job"]),
    }


def measure_backfill(data: Path) -> dict[str, Any]:
    home = data / "whole" / "backfill"
    first = RUN_DATE - dt.timedelta(days=BACKFILL_DAYS - 1)
    dates = [first + dt.timedelta(days=i) for i in range(-1, BACKFILL_DAYS)]
    config = project(home, BACKFILL_ROWS, dates)
    log = home / "runs.log"
    print(f"[backfill] warm-up, then {BACKFILL_DAYS} single runs, then one backfill", flush=True)
    run_process(score_command(config, dates[0]), log)
    singles = [run_process(score_command(config, day), log) for day in dates[1:]]
    backfill = run_process(
        [
            *CLI,
            "backfill",
            "--config",
            str(config),
            "--from",
            str(first),
            "--to",
            str(RUN_DATE),
            "--json",
        ],
        log,
    )
    single_walls = [m.wall for m in singles]
    runs = backfill.record.get("runs", [])
    return {
        "dates": BACKFILL_DAYS,
        "rows": BACKFILL_ROWS,
        "singles": {
            "wall": sum(single_walls),
            "tree": sum(m.tree for m in singles),
            "cpu": sum(m.cpu for m in singles),
            "median_wall": statistics.median(single_walls),
        },
        "backfill": {"wall": backfill.wall, "tree": backfill.tree, "cpu": backfill.cpu},
        "backfill_sql_catalog": [r["after_commit"]["durations_s"].get("sql_catalog") for r in runs],
        "speedup": sum(single_walls) / backfill.wall,
    }


def _summary(runs: list[Measured]) -> dict[str, Any]:
    return {
        "wall": statistics.median(m.wall for m in runs),
        "tree": statistics.median(m.tree for m in runs),
        "cpu": statistics.median(m.cpu for m in runs),
        "walls": [round(m.wall, 2) for m in runs],
    }


def _step_medians(runs: list[Measured]) -> dict[str, float]:
    steps: dict[str, list[float]] = {}
    for m in runs:
        for name, seconds in m.record.get("after_commit", {}).get("durations_s", {}).items():
            steps.setdefault(name, []).append(seconds)
    return {name: round(statistics.median(v), 2) for name, v in steps.items()}


def _median_timeline(runs: list[Measured]) -> list[dict[str, Any]]:
    """The timeline of the run whose wall time is the median one, with its shutdown (the
    command's exit after the last recorded span) and the JVM's exit after that."""
    ordered = sorted(runs, key=lambda m: m.wall)
    middle = ordered[len(ordered) // 2]
    spans = list(middle.record.get("after_commit", {}).get("timeline", []))
    end = max((s["end_s"] for s in spans), default=0.0)
    spans.append({"name": "exit (after the last span)", "start_s": end, "end_s": middle.wall})
    spans.append({"name": "JVM gone", "start_s": middle.wall, "end_s": middle.tree})
    return spans


def render_whole(w: dict[str, Any]) -> str:
    job, ref = w["methods"]["whole job"], w["methods"]["in-process"]
    ratio = job["wall"] / ref["wall"]
    target = TARGETS.get(w["scale"])
    met = "met" if target is not None and ratio <= target else "MISSED"
    verdict = "" if target is None else f" (target <= {target:.1f}x: {met})"
    lines = [
        f"### Whole job, {w['rows']:,} rows (median of {w['reps']} interleaved rounds)",
        "",
        "| method | wall s | all processes gone s | CPU s | walls |",
        "|---|---:|---:|---:|---|",
        *(
            f"| {name} | {m['wall']:.2f} | {m['tree']:.2f} | {m['cpu']:.2f} | {m['walls']} |"
            for name, m in w["methods"].items()
        ),
        "",
        f"whole job / in-process: {ratio:.2f}x wall{verdict}, {job['cpu'] / ref['cpu']:.2f}x CPU",
        "",
        "Steps of the whole job (median seconds; post-commit steps overlap):",
        "",
        "| step | s |",
        "|---|---:|",
        *(f"| {name} | {s:.2f} |" for name, s in w["steps"].items()),
        "",
        "Timeline of the median run (seconds since the process started):",
        "",
        "| span | start | end | took |",
        "|---|---:|---:|---:|",
        *(
            f"| {s['name']} | {s['start_s']:.2f} | {s['end_s']:.2f} | "
            f"{s['end_s'] - s['start_s']:.2f} |"
            for s in w["timeline"]
        ),
    ]
    return "\n".join(lines)


def render_backfill(b: dict[str, Any]) -> str:
    s, one = b["singles"], b["backfill"]
    met = "met" if b["speedup"] >= BACKFILL_TARGET else "MISSED"
    return "\n".join(
        [
            f"### Backfill of {b['dates']} dates vs {b['dates']} single runs "
            f"({b['rows']:,} rows a date)",
            "",
            "| method | wall s | all processes gone s | CPU s |",
            "|---|---:|---:|---:|",
            f"| {b['dates']} x score | {s['wall']:.2f} | {s['tree']:.2f} | {s['cpu']:.2f} |",
            f"| backfill | {one['wall']:.2f} | {one['tree']:.2f} | {one['cpu']:.2f} |",
            "",
            f"backfill {b['speedup']:.2f}x faster (target >= {BACKFILL_TARGET:.0f}x: {met}); "
            f"one single run: median {s['median_wall']:.2f} s; the backfill's sql_catalog "
            f"step per date: {b['backfill_sql_catalog']}",
        ]
    )


def run_whole(scale: str, rows: int, reps: int, data: Path) -> tuple[str, dict[str, Any]]:
    """Both parts: the markdown report and the raw results."""
    whole = measure_whole(scale, rows, reps, data)
    backfill = measure_backfill(data)
    report = f"{render_whole(whole)}\n\n{render_backfill(backfill)}"
    return report, {"whole": whole, "backfill": backfill}
