"""Publish: turn a committed prediction partition into the lookup API's current snapshot.

Only a partition committed by a successful run qualifies: it must carry ``_manifest.json``, every
validation gate in it must have passed, and its Parquet footers must hold the row count the
manifest recorded. The snapshot is built beside the store, renamed into place, and only then
made current by one atomic pointer switch in every configured store (``stores.py``: the
``CURRENT.json`` file, Redis's pointer key). Publishing the same run twice is a no-op;
``rollback`` makes the previous snapshot current.

A multi-model run's snapshot carries the member struct columns beside the served ones (the API
answers them on request); a single-model run's snapshot is exactly what it always was.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from batch_serving.config import JobConfig
from batch_serving.errors import PublishError
from batch_serving.runs.recovery import holding_date, recover_date
from batch_serving.serving.format import (
    SNAPSHOT_MANIFEST,
    build_table,
    read_snapshot_manifest,
    write_snapshot,
)
from batch_serving.serving.pointer import ServingLayout, read_pointer
from batch_serving.serving.records import SnapshotHeader
from batch_serving.serving.remote import RemoteSnapshots, publish_remote, remote_root
from batch_serving.serving.stores import SnapshotStore, open_stores
from batch_serving.storage import AnyPath
from batch_serving.storage.files import data_files, read_tables
from batch_serving.tables.layout import predictions_layout
from batch_serving.tables.manifest import RunManifest, read_manifest
from batch_serving.tables.verify import verify_committed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """Outcome of a publish or rollback, for the CLI summary."""

    model: str
    snapshot_id: str
    previous: str | None
    rows: int
    path: AnyPath
    backends: tuple[str, ...]
    changed: bool
    skipped_reason: str | None = None


def publish(
    cfg: JobConfig,
    run_date: dt.date,
    allow_older: bool = False,
    wait: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Published:
    """Snapshot the committed ``run_date`` partition and make it current in every store.

    Holds the date's lease, so no score run can swap the partition while it is read, and
    repairs an interrupted commit first. A date older than the current snapshot's is not made
    current unless ``allow_older``: a backfill of last month must not replace today's answers
    (use ``--rollback`` to go back). ``progress(ids_written, ids_total)`` follows the writes
    to Redis.
    """
    with holding_date(cfg, run_date, "publish", wait), open_stores(cfg.publish) as stores:
        recover_date(cfg, run_date)
        remote = remote_root(cfg.serving_uri, cfg.storage)
        if remote is not None:  # object storage: decided on a local mirror, pointer PUT last
            # a store that loads the ids from the snapshot must find it whole in the mirror
            whole = _snapshot_ids(cfg, run_date) if stores.reads_snapshot_data else ()
            return publish_remote(
                cfg,
                RemoteSnapshots(remote),
                lambda local: _publish(local, stores, run_date, allow_older, progress),
                stores,
                whole,
            )
        return _publish(cfg, stores, run_date, allow_older, progress)


def snapshot_id_of(run_date: dt.date, manifest: RunManifest) -> str:
    return f"{run_date.isoformat()}_v{manifest.model.version}_{manifest.run_id}"


def _snapshot_ids(cfg: JobConfig, run_date: dt.date) -> tuple[str, ...]:
    """The snapshot id a publish of ``run_date`` builds (none if nothing is committed: the
    publish then says why)."""
    layout = predictions_layout(cfg.output.root, cfg.model.name, cfg.storage, cfg.output.format)
    manifest = read_manifest(layout.committed_dir(run_date))
    return (snapshot_id_of(run_date, manifest),) if manifest is not None else ()


def _publish(
    cfg: JobConfig,
    stores: SnapshotStore,
    run_date: dt.date,
    allow_older: bool,
    progress: Callable[[int, int], None] | None = None,
) -> Published:
    model = cfg.model.name
    table_layout = predictions_layout(cfg.output.root, model, cfg.storage, cfg.output.format)
    # object stores: the pointer's run; Delta: the run directory whose files ARE the date in
    # the version the run committed (``manifest.output.table_version``)
    partition = table_layout.committed_dir(run_date)
    manifest = verify_committed(partition)
    if manifest.output.table_version is not None:
        log.info("publishing %s as of table version %d", partition, manifest.output.table_version)
    if manifest.drift:
        from batch_serving.monitoring.gates import enforce_on_publish

        enforce_on_publish(cfg.monitoring.gates, manifest.drift, partition)
    layout = ServingLayout(cfg.serving_root)
    snapshot_id = snapshot_id_of(run_date, manifest)
    directory = layout.snapshot_dir(model, snapshot_id)
    newer = _current_run_date(layout, model)
    if newer is not None and newer > run_date.isoformat() and not allow_older:
        log.info(
            "current snapshot of %s is for %s, newer than %s: not switching", model, newer, run_date
        )
        return Published(
            model=model,
            snapshot_id=snapshot_id,
            previous=None,
            rows=manifest.output.rows,
            path=directory,
            backends=cfg.publish.backends,
            changed=False,
            skipped_reason=f"current snapshot is for {newer}, newer than {run_date}",
        )
    if not (directory / SNAPSHOT_MANIFEST).is_file():
        _build(cfg, partition, manifest, layout, snapshot_id)
    else:
        log.info("snapshot %s already built; reusing it", snapshot_id)
    holder = table_layout.current_run_id(run_date)
    if holder != manifest.run_id:  # cannot happen under the lease; never serve a mix
        raise PublishError(
            f"{partition} changed while it was published (run {manifest.run_id} -> {holder}); "
            "not switching"
        )
    rows = read_snapshot_manifest(directory).rows
    switch = stores.publish(layout, model, snapshot_id, progress)
    return Published(
        model=model,
        snapshot_id=snapshot_id,
        previous=switch.previous,
        rows=rows,
        path=directory,
        backends=cfg.publish.backends,
        changed=switch.changed,
    )


def rollback(cfg: JobConfig) -> Published:
    """Make the snapshot that was current before this one current again, in every store."""
    with open_stores(cfg.publish) as stores:
        remote = remote_root(cfg.serving_uri, cfg.storage)
        if remote is not None:
            return publish_remote(
                cfg, RemoteSnapshots(remote), lambda local: _rollback(local, stores), stores
            )
        return _rollback(cfg, stores)


def _rollback(cfg: JobConfig, stores: SnapshotStore) -> Published:
    model = cfg.model.name
    layout = ServingLayout(cfg.serving_root)
    switch = stores.rollback(layout, model)
    return Published(
        model=model,
        snapshot_id=switch.current,
        previous=switch.previous,
        rows=switch.rows,
        path=layout.snapshot_dir(model, switch.current),
        backends=cfg.publish.backends,
        changed=True,
    )


def _build(
    cfg: JobConfig,
    partition: AnyPath,
    manifest: RunManifest,
    layout: ServingLayout,
    snapshot_id: str,
) -> None:
    members = list(manifest.scoring.member_columns)
    value_columns = [*manifest.scoring.output_columns, *members]
    files = data_files(partition)
    columns = [*cfg.entity_columns, *value_columns]
    source = read_tables(files, columns=columns) if files else None
    if source is None:
        import pyarrow as pa

        source = pa.table({c: pa.array([], pa.string()) for c in columns})
    table = build_table(source, cfg.entity_columns, value_columns)
    model_dir = layout.model_dir(cfg.model.name)
    tmp = model_dir / f"_tmp-{snapshot_id}-{uuid.uuid4().hex[:8]}"
    try:
        header = SnapshotHeader(
            snapshot_id=snapshot_id,
            model=cfg.model.name,
            model_version=manifest.model.version,
            model_uri=manifest.model.uri,
            run_date=manifest.run_date,
            run_id=manifest.run_id,
            job=manifest.job,
            entity_columns=list(cfg.entity_columns),
            scoring_kind=manifest.scoring.kind,
            source_partition=str(partition),
            published_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        write_snapshot(table, tmp, header, member_columns=members)
        if cfg.publish.features:
            from batch_serving.serving.features import write_features

            write_features(cfg, manifest, tmp)
        target = layout.snapshot_dir(cfg.model.name, snapshot_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built snapshot %s (%d rows)", snapshot_id, len(table))


def _current_run_date(layout: ServingLayout, model: str) -> str | None:
    pointer = read_pointer(layout, model)
    if pointer is None:
        return None
    directory = layout.snapshot_dir(model, pointer.current)
    try:
        return read_snapshot_manifest(directory).run_date
    except Exception:
        return None
