"""Publish step: spark-free entry point that makes a committed partition the served snapshot.

    python jobs/publish.py --config conf/jobs/churn.yaml --run-date 2026-11-22
    python jobs/publish.py --config conf/jobs/churn.yaml --rollback

Same options and exit codes as ``batch-serving publish --help``.
"""

from __future__ import annotations

import sys

from batch_serving.cli import run

if __name__ == "__main__":
    run(["publish", *sys.argv[1:]])
