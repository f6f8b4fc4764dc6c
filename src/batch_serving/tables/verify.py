"""Is a committed partition what its manifest says? (what check-output and publish require)"""

from __future__ import annotations

from batch_serving.errors import PublishError, StorageError
from batch_serving.storage import Location
from batch_serving.storage.files import count_rows
from batch_serving.tables.manifest import MANIFEST_NAME, RunManifest, read_manifest


def verify_committed(partition: Location) -> RunManifest:
    """The committed manifest of ``partition``, or PublishError saying why it is not servable:
    no partition, no manifest (not written by a successful run), failed gates, or Parquet
    footers whose row count differs from the manifest's."""
    if not partition.is_dir():
        raise PublishError(f"no committed partition {partition}: run the score job for that date")
    try:
        manifest = read_manifest(partition)
    except StorageError as exc:
        raise PublishError(str(exc)) from None
    if manifest is None:
        raise PublishError(
            f"{partition} has no committed {MANIFEST_NAME}: it was not written by a "
            "successful run, refusing to publish it"
        )
    failed = manifest.failed_gates()
    if failed:
        raise PublishError(f"{partition} failed validation ({', '.join(failed)}); not publishing")
    try:
        rows = count_rows(partition)
    except StorageError as exc:
        raise PublishError(f"{partition} is unreadable: {exc}") from None
    if rows != manifest.output.rows:
        raise PublishError(
            f"{partition} holds {rows} rows but its manifest recorded {manifest.output.rows}: "
            "the partition changed after commit; rerun the score job"
        )
    return manifest
