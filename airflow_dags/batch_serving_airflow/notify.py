"""Failure notification: ``schedule.on_failure_callback`` (a dotted path to a callable taking
Airflow's context, e.g. ``my_company.alerts:page_oncall``), or ``log_failure`` by default."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from batch_serving.errors import ConfigError

log = logging.getLogger("batch_serving.airflow")

FailureCallback = Callable[[Any], None]
KEY = "schedule.on_failure_callback"


def log_failure(context: Any) -> None:
    """The default: one structured log line (the task log and the DAG processor's log)."""
    ti = context.get("task_instance")
    log.error(
        "batch-serving task failed: dag=%s task=%s date=%s try=%s log=%s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        context.get("ds"),
        getattr(ti, "try_number", "?"),
        getattr(ti, "log_url", "?"),
    )


def failure_callback(dotted: str | None, config_file: str) -> FailureCallback:
    """The callable ``dotted`` names (``module:attr`` or ``module.attr``), imported when the
    DAG is built, so a wrong path is the job's DAG import error naming the key and the path."""
    if not dotted:
        return log_failure
    module_name, sep, attr = dotted.partition(":")
    if not sep:
        module_name, _, attr = dotted.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(
            f"invalid config {config_file}: {KEY} {dotted!r} cannot be imported in Airflow's "
            f"environment: {error}"
        ) from error
    if not callable(target):
        raise ConfigError(f"invalid config {config_file}: {KEY} {dotted!r} is not callable")
    return target  # type: ignore[no-any-return]
