"""Screenshot a run report for the Monitoring page (``make report-png``, after ``make demo``).

Rebuilds the report of ``--run-date`` (default: the latest committed date) of ``--config``
and renders it in headless
Chromium into ``--out`` (default ``docs/img/report.png``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batch_serving.config import load_config, parse_run_date
from batch_serving.monitoring.browser import screenshot
from batch_serving.monitoring.build import build_reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/jobs/churn.yaml")
    parser.add_argument("--out", type=Path, default=Path("docs/img/report.png"))
    parser.add_argument("--run-date", help="default: the latest committed date")
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args(argv)
    run_date = parse_run_date(args.run_date) if args.run_date else None
    report = build_reports(load_config(args.config), run_date)
    console = screenshot(report, args.out, width=1100, height=args.height)
    print(f"{report} -> {args.out}")
    for line in console:
        print(f"console: {line}", file=sys.stderr)
    return 1 if console else 0


if __name__ == "__main__":
    raise SystemExit(main())
