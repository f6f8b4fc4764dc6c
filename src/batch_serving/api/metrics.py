"""Prometheus metrics of one app: request counts and latency, swaps, snapshot gauges, and the
process and Python runtime (``process_*``, ``python_*``).

Each app owns its registry (no process-global metrics), so several apps in one process, as in
the tests, count separately. With several uvicorn workers each worker is one app: a scrape is
answered by one of them, and ``batch_serving_worker_info{pid}`` says which.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from batch_serving.api.backends import Handle


class Metrics:
    """The counters the middleware and the refresh loop update."""

    def __init__(
        self, snapshots: Callable[[], Mapping[str, Handle]], live: Callable[[], int]
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "batch_serving_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "batch_serving_request_duration_seconds",
            "Request latency (server side) by route template",
            ["route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.swaps = Counter(
            "batch_serving_snapshot_swaps",
            "Snapshots made current",
            ["model"],
            registry=self.registry,
        )
        self.refresh_errors = Counter(
            "batch_serving_refresh_errors",
            "Failed polls of the snapshot store",
            registry=self.registry,
        )
        self.registry.register(SnapshotCollector(snapshots, live))
        ProcessCollector(registry=self.registry)  # process_* (cpu, memory, fds, start time)
        PlatformCollector(registry=self.registry)  # python_info
        GCCollector(registry=self.registry)  # python_gc_*

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class SnapshotCollector:
    """Gauges computed at scrape time from whatever is current."""

    def __init__(
        self, snapshots: Callable[[], Mapping[str, Handle]], live: Callable[[], int]
    ) -> None:
        self._snapshots = snapshots
        self._live = live

    def collect(self) -> Iterable[Metric]:
        age = GaugeMetricFamily(
            "batch_serving_snapshot_age_seconds",
            "Seconds since the served snapshot was published",
            labels=["model"],
        )
        published_at = GaugeMetricFamily(
            "batch_serving_snapshot_published_timestamp_seconds",
            "When the served snapshot was published (Unix time; alert on time() - this)",
            labels=["model"],
        )
        info = InfoMetricFamily(
            "batch_serving_model",
            "The served snapshot of each model: model version, snapshot id, run date",
            labels=["model"],
        )
        rows = GaugeMetricFamily(
            "batch_serving_snapshot_rows", "Entities in the served snapshot", labels=["model"]
        )
        version = GaugeMetricFamily(
            "batch_serving_snapshot_model_version",
            "Model version of the served snapshot",
            labels=["model"],
        )
        now = dt.datetime.now(dt.UTC)
        for model, handle in self._snapshots().items():
            m = handle.manifest.provenance()
            published = dt.datetime.fromisoformat(m.published_at)
            age.add_metric([model], (now - published).total_seconds())
            published_at.add_metric([model], published.timestamp())
            info.add_metric(
                [model],
                {
                    "version": str(m.model_version),
                    "snapshot": handle.snapshot_id,
                    "run_date": str(m.run_date),
                },
            )
            rows.add_metric([model], float(handle.manifest.rows))
            version.add_metric([model], float(m.model_version))
        loaded = GaugeMetricFamily(
            "batch_serving_snapshots_mapped", "Snapshot handles still alive (current + draining)"
        )
        loaded.add_metric([], float(self._live()))
        worker = InfoMetricFamily(
            "batch_serving_worker",
            "The process that answered this scrape (one of the uvicorn workers)",
            value={"pid": str(os.getpid())},
        )
        return [age, published_at, rows, version, info, loaded, worker]
