"""Resolve the job's models once on the driver, describe them, and ship them to executors."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession

from batch_serving.config import JobConfig
from batch_serving.config.members import MemberModel
from batch_serving.models.loading import loaded_pinned, output_request
from batch_serving.models.registry import ModelRef, resolve_model
from batch_serving.scoring.plan import Member
from batch_serving.spark.delivery import DeliveryPlan, ModelHandle, release
from batch_serving.spark.engines import CoreModels, Models

log = logging.getLogger(__name__)


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


def resolve_members(cfg: JobConfig) -> list[tuple[MemberModel, ModelRef]]:
    """Pin every alias to a version, once, so a moving alias cannot mix versions in a run."""
    resolved = []
    for member in cfg.member_models():
        ref = resolve_model(member.model)
        log.info(
            "resolved %s %s -> %s (model run %s)",
            member.key,
            member.model.selector,
            ref.uri,
            ref.run_id,
        )
        resolved.append((member, ref))
    return resolved


def fetch_models(cfg: JobConfig, resolved: list[tuple[MemberModel, ModelRef]]) -> None:
    """Download and load every pinned model into the process's cache (``loaded_pinned``)
    without Spark, so a caller can do it while the session starts; ``prepare_models`` then
    finds them loaded, describes and ships them."""
    for config, ref in resolved:
        loaded_pinned(config.model, ref)


def served_runtime(cfg: JobConfig, resolved: list[tuple[MemberModel, ModelRef]]) -> str | None:
    """The runtime of a single-model job's model (which picks its engine: a Spark ML pipeline
    is scored by Spark); None for a multi-model job, which the core scores whatever its
    members are (and which refuses a member it cannot score)."""
    if cfg.multi_model or len(resolved) != 1:
        return None
    config, ref = resolved[0]
    return loaded_pinned(config.model, ref)[0].runtime


def prepare_models(
    spark: SparkSession,
    cfg: JobConfig,
    resolved: list[tuple[MemberModel, ModelRef]],
    models: Models | None = None,
) -> PreparedModels:
    """Describe and deliver each pinned model the way ``models`` (the run's engine) scores
    them; the core's way by default (the stream's)."""
    seam = models if models is not None else CoreModels()
    members, deliveries = [], []
    for config, ref in resolved:
        request = output_request(cfg, config.model, champion=config.role == "champion")
        loaded, size_mb = loaded_pinned(config.model, ref)
        spec = seam.describe(spark, loaded, request, ref.uri)
        trusted = config.model.skops_trusted_types
        delivery = seam.deliver(spark, ref, loaded, size_mb, cfg.loading, trusted)
        if config.inputs is not None and len(config.inputs) != len(spec.features):
            from batch_serving.errors import ConfigError

            raise ConfigError(
                f"members.{config.key}.inputs lists {len(config.inputs)} sources but "
                f"{ref.uri} has {len(spec.features)} features {list(spec.features)}"
            )
        log.info(
            "model %s (%s): kind %s, %d features, delivery %s (%.1f MB)",
            ref.uri,
            config.key,
            spec.kind,
            len(spec.features),
            delivery.strategy,
            delivery.artifact_mb,
        )
        members.append(Member(config.key, ref, spec, config.role, config.inputs))
        deliveries.append(delivery)
    return PreparedModels(tuple(members), tuple(deliveries))
