"""Feature snapshot: the scored input rows, published beside the predictions (opt-in).

With ``publish.features: true`` a snapshot directory also holds ``features/``: the same
sorted-Arrow format as the predictions (``format.py``), keyed by entity id, built from exactly
the input files the run read (its manifest records their names, sizes and mtimes: a late file
is left out, a changed or missing one refused). The lookup API's live fallback reads
it to score ids that are not in the predictions, with the same features the batch saw. Its
manifest carries what live scoring needs to reproduce the batch's answer: the model version
and registry, the entity columns, the score column and the job's rules; for a multi-model job
also every member pinned at the version the run scored with (key, role, name, version, model
run id, registry, pipeline inputs, positive label), the ensemble's config and the cascade's
stages, so the live path plans exactly the batch's models without re-resolving an alias and
answers a cascade job from the stage that would have answered in the batch.
"""

from __future__ import annotations

import logging
from pathlib import Path

from batch_serving.config import JobConfig
from batch_serving.errors import PublishError
from batch_serving.serving.format import build_table, write_snapshot
from batch_serving.serving.records import FeatureHeader, PinnedMember
from batch_serving.storage import AnyPath, resolve
from batch_serving.storage.files import data_files, read_tables
from batch_serving.tables.manifest import InputFile, RunManifest

log = logging.getLogger(__name__)

FEATURES_DIR = "features"
# Redis: under a name that is not a valid served model name, so the API never lists or serves
# the features as predictions; found by the run id of the predictions snapshot they belong to
FEATURES_SUFFIX = "@features"


def write_features(cfg: JobConfig, manifest: RunManifest, snapshot_dir: Path) -> int:
    """Write ``<snapshot_dir>/features`` from the input files the run read; returns its rows."""
    files = scored_files(cfg, manifest)
    table = read_tables(files)
    drop = [c for c in (cfg.input.partition_column,) if c in table.column_names]
    table = table.drop_columns(drop)
    values = [c for c in table.column_names if c not in cfg.entity_columns]
    built = build_table(table, cfg.entity_columns, values)
    write_snapshot(built, snapshot_dir / FEATURES_DIR, live_manifest(cfg, manifest))
    return len(built)


def scored_files(cfg: JobConfig, manifest: RunManifest) -> list[AnyPath]:
    """Exactly the input files the run read, as its manifest recorded them (issue #31.8): a
    file added to the partition after the run is left out (the batch never scored it), and a
    recorded file that is gone or changed since (size or mtime) is refused by name, because
    the live path would then answer from features the batch never saw."""
    partition = resolve(manifest.input.path, cfg.storage)
    recorded = manifest.input.files
    if recorded is None:
        raise PublishError(
            f"publish.features: run {manifest.run_id}'s manifest does not record which files "
            f"of {partition} it read; score {manifest.run_date} again to publish its features"
        )
    if not recorded:
        raise PublishError(f"publish.features: input partition {partition} has no data files")
    files = [_unchanged(partition, partition / f.name, f, manifest.run_id) for f in recorded]
    late = sorted({str(f) for f in data_files(partition)} - {str(f) for f in files})
    if late:
        log.warning(
            "publish.features: %d file(s) of %s arrived after run %s and are left out: %s",
            len(late),
            partition,
            manifest.run_id,
            late,
        )
    return files


def _unchanged(partition: AnyPath, path: AnyPath, read: InputFile, run_id: str) -> AnyPath:
    try:
        now = InputFile.of(partition, path)
    except FileNotFoundError:
        raise PublishError(
            f"publish.features: input file {path} that run {run_id} scored is gone"
        ) from None
    if (now.bytes, now.mtime_ns) != (read.bytes, read.mtime_ns):
        raise PublishError(
            f"publish.features: input file {path} changed after run {run_id} scored it "
            f"(bytes {read.bytes} -> {now.bytes}, mtime_ns {read.mtime_ns} -> {now.mtime_ns}); "
            "score the date again before publishing"
        )
    return path


def live_manifest(cfg: JobConfig, manifest: RunManifest) -> FeatureHeader:
    return FeatureHeader(
        snapshot_id=features_id(manifest.run_id),
        model=cfg.model.name,
        model_version=manifest.model.version,
        model_uri=manifest.model.uri,
        tracking_uri=cfg.model.tracking_uri,
        registry_uri=manifest.model.registry_uri,
        positive_label=cfg.model.positive_label,
        run_date=manifest.run_date,
        run_id=manifest.run_id,
        entity_columns=list(cfg.entity_columns),
        score_column=cfg.output.score_column,
        rules=[dict(r) for r in cfg.rules] if cfg.rules else [],
        ensemble=manifest.ensemble,
        source_partition=manifest.input.path,
        members=pinned_members(cfg, manifest),
        ensemble_config=cfg.ensemble.model_dump(mode="json") if cfg.ensemble else None,
        champion_features=None if cfg.features == "from_signature" else list(cfg.features),
        cascade=cfg.cascade,
    )


def pinned_members(cfg: JobConfig, manifest: RunManifest) -> list[PinnedMember]:
    """Every model of a multi-model run in scoring order, at the version the run pinned (the
    manifest's), with what the job's config adds (pipeline inputs, registry, positive label);
    empty for a single-model run."""
    pinned = {m.key: m for m in manifest.members}
    if not pinned:
        return []
    out = []
    for member in cfg.member_models():
        record = pinned.get(member.key)
        if record is None:
            raise PublishError(
                f"publish.features: member {member.key!r} of the job is not in run "
                f"{manifest.run_id}'s manifest (members: {sorted(pinned)})"
            )
        out.append(
            PinnedMember(
                key=member.key,
                role=member.role,
                name=record.name,
                version=record.version,
                alias=record.alias,
                run_id=record.run_id,
                uri=record.uri,
                inputs=list(record.inputs) if record.inputs is not None else None,
                tracking_uri=member.model.tracking_uri,
                registry_uri=member.model.effective_registry_uri,
                positive_label=member.model.positive_label,
                skops_trusted_types=list(member.model.skops_trusted_types),
            )
        )
    return out


def features_name(model: str) -> str:
    return f"{model}{FEATURES_SUFFIX}"


def features_id(run_id: str) -> str:
    return f"features-{run_id}"


def features_meta_key(model: str, run_id: str) -> str:
    return f"bs:{features_name(model)}:snap:{features_id(run_id)}:meta"
