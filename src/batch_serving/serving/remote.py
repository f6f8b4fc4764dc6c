"""Snapshots on object storage (issue #12.3): publish to, and serve from, an ``s3://`` root.

The remote root has the local layout (``<model>/snapshots/<id>/`` + ``<model>/CURRENT.json``).
Publishing works on a local mirror (the remote pointer and the small ``_snapshot.json`` of
each kept snapshot), so the local publish logic (history, keep, rollback, newer-date refusal)
is the one that decides; then the new snapshot is uploaded, its manifest last, and only then
``CURRENT.json`` (one PUT, atomic): an API never finds a pointer to a half-uploaded snapshot.
Replaced snapshots beyond ``keep`` are deleted after the pointer switch.

The API downloads the current snapshot into a local cache directory (to a temporary name,
renamed when complete, then checked against its sha256) and memory-maps it as usual.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from batch_serving.config import MODEL_NAME, StorageConfig
from batch_serving.serving.format import SNAPSHOT_FILE, SNAPSHOT_MANIFEST
from batch_serving.serving.pointer import POINTER, ServingLayout, checked_name, read_pointer_file
from batch_serving.serving.records import Pointer
from batch_serving.storage import Location, location

if TYPE_CHECKING:
    from batch_serving.config import JobConfig
    from batch_serving.serving.publish import Published
    from batch_serving.serving.stores import SnapshotStore

log = logging.getLogger(__name__)


class RemoteSnapshots:
    """The snapshot store under a remote root."""

    def __init__(self, root: Location) -> None:
        self.root = root

    def model_dir(self, model: str) -> Location:
        return self.root / checked_name(model, "model name")

    def snapshot_dir(self, model: str, snapshot_id: str) -> Location:
        return self.model_dir(model) / "snapshots" / checked_name(snapshot_id, "snapshot id")

    def models(self) -> list[str]:
        names = [p.name for p in self.root.iterdir()]
        return sorted(
            n for n in names if MODEL_NAME.fullmatch(n) and (self.root / n / POINTER).is_file()
        )

    def read_pointer(self, model: str) -> Pointer | None:
        return read_pointer_file(self.model_dir(model) / POINTER)

    def snapshots(self, model: str) -> list[str]:
        return sorted(p.name for p in (self.model_dir(model) / "snapshots").iterdir())

    def download(self, model: str, snapshot_id: str, target: Path) -> Path:
        """Copy a snapshot to ``target`` (whole, or not at all: temp dir + rename)."""
        if (target / SNAPSHOT_MANIFEST).is_file():
            return target
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.mkdir(parents=True)
        try:
            for name in (SNAPSHOT_MANIFEST, SNAPSHOT_FILE):
                source = self.snapshot_dir(model, snapshot_id) / name
                _copy(source.fs, source.path, pafs.LocalFileSystem(), str(tmp / name))
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def upload(self, local_dir: Path, model: str, snapshot_id: str) -> None:
        """Data first, manifest last (a snapshot without its manifest is not one)."""
        remote = self.snapshot_dir(model, snapshot_id)
        if (remote / SNAPSHOT_MANIFEST).is_file():
            return
        for name in (SNAPSHOT_FILE, SNAPSHOT_MANIFEST):
            _copy(pafs.LocalFileSystem(), str(local_dir / name), remote.fs, (remote / name).path)

    def switch(self, model: str, pointer_file: Path) -> None:
        """One PUT of ``CURRENT.json``: the publish's commit point."""
        _upload_pointer(self.model_dir(model) / POINTER, pointer_file.read_bytes())

    def prune(self, model: str, retained: set[str]) -> None:
        for snapshot_id in self.snapshots(model):
            if snapshot_id not in retained:
                self.snapshot_dir(model, snapshot_id).rmtree()
                log.info("pruned old remote snapshot %s", snapshot_id)


def _upload_pointer(path: Location, payload: bytes) -> None:
    """A separate function so fault-injection tests can fail the pointer switch."""
    path.write_bytes(payload)


def _copy(src_fs: pafs.FileSystem, src: str, dst_fs: pafs.FileSystem, dst: str) -> None:
    with src_fs.open_input_stream(src) as fin, dst_fs.open_output_stream(dst) as fout:
        while chunk := fin.read(8 << 20):
            fout.write(chunk)


def remote_root(uri: str, storage: StorageConfig | None) -> Location | None:
    """A ``Location`` when ``uri`` is on a remote filesystem, else None (local layout)."""
    if "://" not in uri or uri.startswith("file://"):
        return None
    return location(uri, storage)


@contextmanager
def mirrored(
    store: RemoteSnapshots, model: str, whole: Collection[str] = ()
) -> Iterator[ServingLayout]:
    """A local serving layout holding the remote pointer and the kept snapshots' manifests;
    the snapshots in ``whole`` (if they exist remotely) are downloaded with their data, for a
    publish that reads them (Redis loads its ids from the snapshot)."""
    with tempfile.TemporaryDirectory(prefix="bs-serving-") as tmp:
        layout = ServingLayout(Path(tmp))
        pointer = store.read_pointer(model)
        model_dir = layout.model_dir(model)
        (model_dir / "snapshots").mkdir(parents=True)
        for snapshot_id in whole:
            if (store.snapshot_dir(model, snapshot_id) / SNAPSHOT_MANIFEST).is_file():
                store.download(model, snapshot_id, layout.snapshot_dir(model, snapshot_id))
        if pointer is not None:
            (model_dir / POINTER).write_text(pointer.to_json())
            for snapshot_id in [pointer.current, *pointer.history]:
                manifest = store.snapshot_dir(model, snapshot_id) / SNAPSHOT_MANIFEST
                local = layout.snapshot_dir(model, snapshot_id)
                if manifest.is_file() and not local.is_dir():
                    local.mkdir(parents=True)
                    (local / SNAPSHOT_MANIFEST).write_bytes(manifest.read_bytes())
        yield layout


def publish_remote(
    cfg: JobConfig,
    store: RemoteSnapshots,
    action: Callable[[JobConfig], Published],
    stores: SnapshotStore,
    whole: Collection[str] = (),
) -> Published:
    """Run the local publish (or rollback) ``action`` on a mirror, then apply it remotely
    (``whole``: snapshots the action reads, mirrored with their data); the mirror's
    ``CURRENT.json`` is uploaded when one of ``stores`` keeps its pointer there."""
    model = cfg.model.name
    with mirrored(store, model, whole) as layout:
        local_cfg = cfg.model_copy(
            update={"publish": cfg.publish.model_copy(update={"root": str(layout.root)})}
        )
        result = action(local_cfg)
        pointer_file = layout.model_dir(model) / POINTER
        built = layout.snapshot_dir(model, result.snapshot_id)
        if (built / SNAPSHOT_FILE).is_file():
            store.upload(built, model, result.snapshot_id)
        if result.changed and stores.keeps_pointer_file and pointer_file.is_file():
            store.switch(model, pointer_file)
            kept = Pointer.from_json(pointer_file.read_text(), f"snapshot pointer {pointer_file}")
            store.prune(model, {kept.current, *kept.history})
    return replace(result, path=store.snapshot_dir(model, result.snapshot_id))


class RemoteSnapshotCache:
    """The API's side: current snapshots of a remote root, downloaded into ``cache``."""

    def __init__(self, root: Location, cache: Path) -> None:
        self.store = RemoteSnapshots(root)
        self.cache = cache

    def models(self) -> list[str]:
        return self.store.models()

    def read_pointer(self, model: str) -> Pointer | None:
        return self.store.read_pointer(model)

    def local_snapshot(self, model: str, snapshot_id: str) -> Path:
        target = ServingLayout(self.cache).snapshot_dir(model, snapshot_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        return self.store.download(model, snapshot_id, target)
