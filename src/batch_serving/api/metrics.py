"""Prometheus metrics of one app: request counts and latency, swaps, snapshot gauges, and the
process and Python runtime (``process_*``, ``python_*``).

Two ways to keep the counters, chosen once, here, by ``PROMETHEUS_MULTIPROC_DIR``:

- unset (one process): each app owns its registry (no process-global metrics), so several
  apps in one process, as in the tests, count separately; ``process_*``/``python_gc_*`` are
  this process's.
- set (several uvicorn workers): prometheus_client's multiprocess mode. Every worker writes its
  counters and histograms to files in that directory and a scrape, whichever worker answers
  it, sums the files of all workers (dead ones included), so counters never go back when the
  scrape lands on another worker or a worker restarts. The directory must exist and be empty
  when the server starts. Per-process collectors are left out (they would describe only the
  worker that answered); the snapshot gauges are computed by the answering worker.

Either way ``batch_serving_worker_info{pid}`` names the worker that answered the scrape.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from batch_serving.api.backends import Handle
from batch_serving.config.environment import prometheus_multiproc_dir
from batch_serving.errors import ConfigError


class Metrics:
    """The counters the middleware and the refresh loop update."""

    def __init__(
        self, snapshots: Callable[[], Mapping[str, Handle]], live: Callable[[], int]
    ) -> None:
        shared = prometheus_multiproc_dir()
        # what a scrape reads: this app's metrics, or the files of every worker
        self.registry = _process_registry() if shared is None else _shared_registry(shared)
        # where the values live: this registry, or (multiprocess) the files, written by
        # prometheus_client for any metric; registering them too would count them twice
        own = self.registry if shared is None else None
        self.requests = Counter(
            "batch_serving_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "batch_serving_request_duration_seconds",
            "Request latency (server side) by route template",
            ["route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=own,
        )
        self.swaps = Counter(
            "batch_serving_snapshot_swaps",
            "Snapshots made current",
            ["model"],
            registry=own,
        )
        self.refresh_errors = Counter(
            "batch_serving_refresh_errors",
            "Failed polls of the snapshot store",
            registry=own,
        )
        self.registry.register(SnapshotCollector(snapshots, live))

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


def _process_registry() -> CollectorRegistry:
    """One process's metrics, with its runtime: ``process_*``, ``python_info``,
    ``python_gc_*``."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_* (cpu, memory, fds, start time)
    PlatformCollector(registry=registry)  # python_info
    GCCollector(registry=registry)  # python_gc_*
    return registry


def _shared_registry(directory: str) -> CollectorRegistry:
    """The sum over every worker's files in ``directory`` (prometheus_client multiprocess)."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(
            f"PROMETHEUS_MULTIPROC_DIR {directory} is not a directory: create it (empty) "
            "before starting the API"
        )
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise ConfigError(
            f"PROMETHEUS_MULTIPROC_DIR={directory} was set after prometheus_client was "
            "imported, so this process keeps its counters to itself: set it in the "
            "environment the server starts with"
        )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    PlatformCollector(registry=registry)  # python_info: the same in every worker
    return registry


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
