"""Nightly scoring job: spark-submit entry point (thin; all logic lives in batch_serving).

    spark-submit --master local[2] jobs/score.py \
        --config conf/jobs/churn.yaml --run-date 2026-11-22 [--model-alias champion]

Same options and exit codes as ``batch-serving score --help``.
"""

from __future__ import annotations

import sys

from batch_serving.cli import run

if __name__ == "__main__":
    run(["score", *sys.argv[1:]])
