"""Assets: what downstream DAGs schedule on (one partitioned event per date)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.sdk import Asset, Context

from batch_serving.config import JobConfig
from batch_serving.errors import BatchServingError
from batch_serving.serving.pointer import ServingLayout, read_pointer
from batch_serving.tables.layout import predictions_layout
from batch_serving.tables.manifest import read_manifest

log = logging.getLogger("batch_serving.airflow")


def predictions_asset(model: str) -> Asset:
    """``predictions/<model>/``; one partitioned event per committed date (key: YYYY-MM-DD)."""
    return Asset(f"predictions.{model}")


def serving_asset(model: str) -> Asset:
    """The lookup API's current snapshot of ``model``; one event per published date."""
    return Asset(f"serving.{model}")


def announce(context: Context, asset: Asset, dates: list[str], extra: dict[str, Any]) -> None:
    """Attach partition keys (dates) and ``extra`` to the task's event for ``asset``; Airflow
    records it when the task succeeds."""
    event = context["outlet_events"][asset]
    event.add_partitions(dates)
    event.extra.update(extra)


def predictions_extra(cfg: JobConfig, ds: str) -> dict[str, Any]:
    """What a consumer needs to read the date: its path, and what the manifest says of it."""
    run_date = dt.date.fromisoformat(ds)
    partition = predictions_layout(cfg.output.root, cfg.model.name).partition_dir(run_date)
    extra: dict[str, Any] = {"job": cfg.job, "ds": ds, "path": str(partition)}
    try:
        manifest = read_manifest(partition)
    except BatchServingError as error:  # committed and checked already: say so, do not fail
        log.warning("asset event for %s without manifest details: %s", partition, error)
        return extra
    if manifest is not None:
        extra.update(
            run_id=manifest.run_id,
            rows=manifest.output.rows,
            model_version=manifest.model.version,
        )
    return extra


def serving_extra(cfg: JobConfig, ds: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"job": cfg.job, "ds": ds, "backends": list(cfg.publish.backends)}
    try:
        pointer = read_pointer(ServingLayout(cfg.serving_root), cfg.model.name)
    except BatchServingError as error:
        log.warning("asset event for serving.%s without snapshot id: %s", cfg.model.name, error)
        return extra
    if pointer is not None:
        extra["snapshot"] = pointer.current
    return extra
