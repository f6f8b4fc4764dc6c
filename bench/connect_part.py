"""``score_bench.py --only connect``: the demo's nightly job as a Spark Connect client vs the
same job classic (its own JVM), both on the dataframe engine (the engine Connect runs).

Each mode has its own copy of the demo project under ``.bench_data/connect/<scale>/<mode>``
(job file, warehouse, registry, Derby metastore, output): an embedded metastore admits one JVM,
and the Connect server is that JVM for its copy. The server is started once, before the rounds,
with what a classic session of the job would get (``server_conf``: defaults, connector jars,
the metastore), and stopped (process group) at the end: a Connect endpoint is a long-running
service, so its start is not a job's cost. Interleaved rounds after a warm-up run of each
mode, median wall to the command's exit. Target: Connect <= 1.10x classic at 2M rows.
"""

from __future__ import annotations

import datetime as dt
import statistics
from pathlib import Path
from typing import Any

import yaml
from whole_part import RUN_DATE, Measured, project, run_process, score_command

TARGET = 1.10  # Connect / classic, wall, at 2M


def _copy(home: Path, rows: int, remote: str | None) -> Path:
    """The demo project in ``home``, its job on the dataframe engine, a Connect client of
    ``remote`` when given."""
    config = project(home, rows, [RUN_DATE - dt.timedelta(days=1), RUN_DATE])
    job = yaml.safe_load(config.read_text())
    job["engine"] = "dataframe"
    job["spark"].pop("remote", None)
    if remote is not None:
        job["spark"]["remote"] = remote
    config.write_text(yaml.safe_dump(job, sort_keys=False))
    return config


def _server(config: Path, log: Path) -> Any:
    from batch_serving.config import load_config
    from batch_serving.spark.connect import ConnectServer
    from batch_serving.spark.session import server_conf

    cfg = load_config(config)
    conf = server_conf(cfg.spark, cfg.catalog, cfg.metastore_dir)
    return ConnectServer(conf=conf, master=cfg.spark.master, log=log)


def measure_connect(scale: str, rows: int, reps: int, data: Path) -> dict[str, Any]:
    base = data / "connect" / scale
    classic = _copy(base / "classic", rows, None)
    remote = _copy(base / "connect", rows, None)
    server = _server(remote, base / "connect" / "server.log")
    print("[connect] starting the Spark Connect server ...", flush=True)
    server.start()
    try:
        remote = _copy(base / "connect", rows, server.url)
        return _rounds(classic, remote, base, rows, reps)
    finally:
        server.stop()


def _rounds(classic: Path, remote: Path, base: Path, rows: int, reps: int) -> dict[str, Any]:
    configs = {"classic": classic, "connect": remote}
    log = base / "runs.log"
    for name, config in configs.items():
        print(f"[connect] warm-up: {name} (first run: metastore, previous date)", flush=True)
        run_process(score_command(config, RUN_DATE - dt.timedelta(days=1)), log)
    got: dict[str, list[Measured]] = {name: [] for name in configs}
    for round_ in range(reps):
        order = list(configs.items())
        for name, config in order if round_ % 2 == 0 else reversed(order):
            print(f"[connect] {name} round {round_ + 1}/{reps} ...", flush=True)
            got[name].append(run_process(score_command(config, RUN_DATE), log))
    scores = {name: _rows_written(runs[-1]) for name, runs in got.items()}
    return {
        "rows": rows,
        "reps": reps,
        "rows_written": scores,
        "methods": {
            name: {
                "wall": statistics.median(m.wall for m in runs),
                "cpu": statistics.median(m.cpu for m in runs),
                "walls": [round(m.wall, 2) for m in runs],
            }
            for name, runs in got.items()
        },
    }


def _rows_written(measured: Measured) -> int | None:
    """Rows the run committed, from its ``score --json`` manifest."""
    manifest = measured.record.get("manifest", {})
    rows = manifest.get("output", {}).get("rows")
    return int(rows) if rows is not None else None


def render_connect(c: dict[str, Any], scale: str) -> str:
    classic, connect = c["methods"]["classic"], c["methods"]["connect"]
    ratio = connect["wall"] / classic["wall"]
    complete = all(n == c["rows"] for n in c["rows_written"].values())
    met = ratio <= TARGET and complete
    verdict = f" (target <= {TARGET:.2f}x at 2M: {'met' if met else 'MISSED'})"
    note = "" if scale == "2M" else " (the target is stated for 2M rows)"
    return "\n".join(
        [
            f"### Whole job as a Spark Connect client vs classic, {c['rows']:,} rows "
            f"(dataframe engine, median of {c['reps']} interleaved rounds)",
            "",
            "| mode | wall s | CPU s (client process tree) | walls |",
            "|---|---:|---:|---|",
            f"| classic (own JVM) | {classic['wall']:.2f} | {classic['cpu']:.2f} "
            f"| {classic['walls']} |",
            f"| Connect client (server already up) | {connect['wall']:.2f} | "
            f"{connect['cpu']:.2f} | {connect['walls']} |",
            "",
            f"Connect / classic: {ratio:.2f}x wall{verdict if scale == '2M' else note}; "
            f"rows written per mode: {c['rows_written']}. The Connect client's CPU excludes "
            "the server's (a separate, long-running process).",
        ]
    )


def run_connect(scale: str, rows: int, reps: int, data: Path) -> tuple[str, dict[str, Any]]:
    result = measure_connect(scale, rows, reps, data)
    return render_connect(result, scale), result
