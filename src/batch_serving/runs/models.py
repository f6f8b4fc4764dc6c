"""Resolve the job's models once on the driver, describe them, and ship them to executors."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass

from pyspark.sql import SparkSession

from batch_serving.config import JobConfig
from batch_serving.models.loading import load_and_describe
from batch_serving.models.registry import ModelRef, resolve_model
from batch_serving.scoring.plan import Member
from batch_serving.spark.delivery import DeliveryPlan, ModelHandle, plan_delivery, release

log = logging.getLogger(__name__)

SERVED = "champion"


@dataclass(frozen=True)
class PreparedModels:
    """The plan's members and how each one reaches the executors (same order)."""

    members: tuple[Member, ...]
    deliveries: tuple[DeliveryPlan, ...]

    def handles(self) -> list[ModelHandle]:
        return [d.handle for d in self.deliveries]

    def release(self) -> None:
        for delivery in self.deliveries:
            release(delivery)


def resolve_members(cfg: JobConfig) -> dict[str, ModelRef]:
    """Pin every alias to a version, once, so a moving alias cannot mix versions in a run."""
    ref = resolve_model(cfg.model)
    log.info("resolved %s -> %s (model run %s)", cfg.model.selector, ref.uri, ref.run_id)
    return {SERVED: ref}


def prepare_models(
    spark: SparkSession, cfg: JobConfig, refs: dict[str, ModelRef]
) -> PreparedModels:
    members, deliveries = [], []
    for key, ref in refs.items():
        with tempfile.TemporaryDirectory(prefix="bs-driver-") as tmp:
            spec, loaded, model_dir = load_and_describe(cfg, ref, tmp)
            member = Member(key, ref, spec)
            trusted = cfg.model.skops_trusted_types
            delivery = plan_delivery(spark, ref, loaded.obj, model_dir, cfg.loading, trusted)
        log.info(
            "model %s: kind %s, %d features, delivery %s (%.1f MB)",
            ref.uri,
            member.spec.kind,
            len(member.spec.features),
            delivery.strategy,
            delivery.artifact_mb,
        )
        members.append(member)
        deliveries.append(delivery)
    return PreparedModels(tuple(members), tuple(deliveries))
