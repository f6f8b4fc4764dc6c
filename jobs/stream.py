"""Streaming scoring job: spark-submit entry point (thin; all logic lives in batch_serving).

    spark-submit --master local[2] jobs/stream.py --config conf/jobs/churn_stream.yaml \
        [--available-now]

A Kafka source or sink (``stream.source: kafka``, ``stream.sink: [kafka]``) needs Spark's
Kafka connector on the classpath: under spark-submit give it yourself,
``--jars "$(ls jars/lib/*.jar | paste -sd, -)"`` (``make jars`` fetches them); the console
script ``batch-serving stream`` adds ``jars/lib`` of the checkout by itself.

Same options and exit codes as ``batch-serving stream --help``.
"""

from __future__ import annotations

import sys

from batch_serving.cli import run

if __name__ == "__main__":
    run(["stream", *sys.argv[1:]])
