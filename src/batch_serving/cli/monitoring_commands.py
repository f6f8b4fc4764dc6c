"""``batch-serving runs`` and ``batch-serving report``: the monitoring view of a job's runs."""

from __future__ import annotations

import argparse

from batch_serving.cli.output import emit


def runs_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.monitoring.history import list_runs
    from batch_serving.tables.layout import predictions_layout

    cfg = load_config(args.config, env=args.env)
    layout = predictions_layout(cfg.output.root, cfg.model.name)
    runs, _ = list_runs(layout, cfg.monitoring.gates)
    if args.run_date:  # one date's runs only
        runs = [r for r in runs if r.run_date == parse_run_date(args.run_date).isoformat()]
    record = {"job": cfg.job, "model": cfg.model.name, "runs": [r.to_dict() for r in runs]}
    emit(args.json, record, run_lines(cfg.job, cfg.model.name, [r.to_dict() for r in runs]))
    return 0


def run_lines(job: str, model: str, runs: list[dict[str, object]]) -> list[str]:
    head = f"{'date':<10}  {'run':<24}  {'status':<13}  {'rows':>9}  {'quar.':>6}  "
    head += f"{'GX':<4}  {'drift':<12}  {'score PSI':>9}  max PSI"
    lines = [f"batch-serving: runs of job {job} (model {model})", head]
    for r in runs:
        psi = "" if r["score_psi"] is None else f"{r['score_psi']:.4f}"
        top = "" if r["max_psi"] is None else f"{r['max_psi']:.4f} ({r['max_psi_column']})"
        rows = "" if r["rows_out"] is None else r["rows_out"]
        quarantined = "" if r["quarantined"] is None else r["quarantined"]
        lines.append(
            f"{r['run_date'] or '?':<10}  {r['run_id']!s:<24}  {r['status']!s:<13}  "
            f"{rows!s:>9}  {quarantined!s:>6}  {r['validation']!s:<4}  {r['drift_gate']!s:<12}  "
            f"{psi:>9}  {top}"
        )
    if not runs:
        lines.append("(no runs yet)")
    return lines


def report_command(args: argparse.Namespace) -> int:
    from batch_serving.config import load_config, parse_run_date
    from batch_serving.monitoring.build import build_reports

    cfg = load_config(args.config, env=args.env)
    run_date = parse_run_date(args.run_date) if args.run_date else None
    report = build_reports(cfg, run_date)
    record = {"job": cfg.job, "model": cfg.model.name, "report": str(report)}
    emit(args.json, record, [str(report)])
    return 0
