"""Storage: the ONE module that turns a URI into a filesystem and a path (issue #12, #27.2).

``location(uri)`` gives a ``Location`` (a pyarrow filesystem + a path on it) for every URI:
local paths (plain or ``file://``) on pyarrow's LocalFileSystem, ``s3://``/``s3a://``,
``gs://``, ``abfs://``/``abfss://`` and ``hdfs://`` on pyarrow's own clients (no Hadoop jars;
HDFS goes through libhdfs). Callers never branch on where a path lives: what differs between
filesystems (how a file is written atomically, whether a directory can be renamed atomically)
is a method or a property of the ``Location``. ``Location`` offers the small pathlib subset
the tables code uses (``/``, ``name``, ``is_dir``, ``read_text`` ...), pickles (executors get
the filesystem with the task), and a local one is ``os.PathLike``, so it goes wherever a
``Path`` goes. Features that keep local files only ask for ``local_path(what)``, which names
the path when it is remote.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import pyarrow.fs as pafs

from batch_serving.config.sections import StorageConfig
from batch_serving.errors import StorageError

OBJECT_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs", "abfs": "abfs", "abfss": "abfs"}
SPARK_SCHEMES = {"s3": "s3a", "gs": "gs", "abfs": "abfss", "hdfs": "hdfs"}
Kind = Literal["local", "object", "hdfs"]


@dataclass(frozen=True, eq=False)
class Location:
    """A path on a pyarrow filesystem; ``path`` is the filesystem's own form (``bucket/key`` on
    S3, ``/abs/dir`` or ``rel/dir`` locally), ``scheme`` the canonical URI scheme (``file``,
    ``s3``, ``gs`` ...)."""

    fs: pafs.FileSystem
    path: str
    scheme: str
    kind: Kind
    authority: str = ""  # hdfs: the namenode (S3/GCS/Azure paths start with the bucket)
    storage: StorageConfig | None = None  # what opened ``fs``: other clients (delta-rs) reuse it

    # --- identity -------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Location):
            return NotImplemented
        return self.uri == other.uri and self.fs.equals(other.fs)

    def __hash__(self) -> int:
        return hash(self.uri)

    def __lt__(self, other: Location) -> bool:
        return self.uri < other.uri

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __fspath__(self) -> str:
        """A local location is ``os.PathLike`` (``open``, ``os.replace``, pyarrow, pandas)."""
        return str(self.local_path("an operating-system path"))

    @property
    def uri(self) -> str:
        if self.kind == "local":
            return self.path
        return f"{self.scheme}://{self.authority}{self.path}"

    @property
    def spark_uri(self) -> str:
        """What Spark's Hadoop filesystems understand (``s3a://`` for S3)."""
        if self.kind == "local":
            return self.path
        return f"{SPARK_SCHEMES.get(self.scheme, self.scheme)}://{self.authority}{self.path}"

    # --- what the filesystem can do -------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    @property
    def renames_directories(self) -> bool:
        """Whether a directory rename is one atomic step here (local disks, HDFS); object
        stores have no directories to rename (what the commit protocol is chosen from)."""
        return self.kind != "object"

    def as_local(self) -> Path | None:
        """This location as a local ``Path``; None when it is remote."""
        return Path(self.path) if self.kind == "local" else None

    def local_path(self, what: str) -> Path:
        """This location as a local ``Path``, for features that keep local files only (drift
        profiles, the run report and index, leases); a remote one is refused naming ``what``."""
        local = self.as_local()
        if local is None:
            raise StorageError(f"{what} needs a local path; {self} is on a remote filesystem")
        return local

    # --- pathlib-like ---------------------------------------------------------------------
    def __truediv__(self, part: str) -> Location:
        return self.with_path(f"{self.path.rstrip('/')}/{part}")

    def joinpath(self, *parts: str) -> Location:
        found = self
        for part in parts:
            found = found / part
        return found

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        path = self.path.rstrip("/")
        if "/" not in path:
            return self.with_path(".")
        return self.with_path(path.rsplit("/", 1)[0] or "/")

    def with_name(self, name: str) -> Location:
        return self.parent / name

    def relative_to(self, other: Location) -> PurePosixPath:
        return PurePosixPath(self.path).relative_to(other.path)

    def resolve(self) -> Location:
        """Absolute, symlinks resolved (local); remote paths are absolute already."""
        local = self.as_local()
        return self if local is None else self.with_path(str(local.resolve()))

    def with_path(self, path: str) -> Location:
        """The same filesystem, another path (in its own form, as listings return it)."""
        return Location(self.fs, path, self.scheme, self.kind, self.authority, self.storage)

    def _info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return bool(self._info().type != pafs.FileType.NotFound)

    def is_dir(self) -> bool:
        return bool(self._info().type == pafs.FileType.Directory)

    def is_file(self) -> bool:
        return bool(self._info().type == pafs.FileType.File)

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        self.fs.create_dir(self.path, recursive=parents)

    def iterdir(self) -> Iterator[Location]:
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            yield self.with_path(info.path)

    def glob(self, pattern: str) -> Iterator[Location]:
        """Direct children whose name matches ``pattern`` (no ``**``)."""
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    def rglob(self, pattern: str) -> Iterator[Location]:
        """Entries at any depth below this directory whose name matches ``pattern``."""
        selector = pafs.FileSelector(self.path, recursive=True, allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            if fnmatch.fnmatchcase(info.base_name, pattern):
                yield self.with_path(info.path)

    def infos(self) -> list[pafs.FileInfo]:
        """Every file below this directory (recursive), with sizes and mtimes."""
        selector = pafs.FileSelector(self.path, recursive=True, allow_not_found=True)
        return [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]

    def newest_mtime(self) -> float:
        """Modification time of the newest entry below this directory (0.0 if it holds none;
        object stores keep mtimes of files only)."""
        selector = pafs.FileSelector(self.path, recursive=True, allow_not_found=True)
        times = [i.mtime.timestamp() for i in self.fs.get_file_info(selector) if i.mtime]
        return max(times, default=0.0)

    # --- reading and writing ----------------------------------------------------------------
    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as fh:
            return bytes(fh.read())

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """Plain write (creating the parent directory where there are directories)."""
        self._make_parent()
        with self.fs.open_output_stream(self.path) as fh:
            fh.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def write_atomic(self, data: bytes) -> None:
        """Write so that a reader sees the old file or the new one whole, never half of it:
        a temporary name beside it then a rename (local disks), one PUT (object stores)."""
        with self.atomic_file() as target, self.fs.open_output_stream(target.path) as fh:
            fh.write(data)

    def atomic_file(self) -> AtomicFile:
        """Where to stream a file that must appear whole or not at all (see ``AtomicFile``)."""
        self._make_parent()
        return AtomicFile(self)

    def _make_parent(self) -> None:
        if self.kind != "object":  # object stores have no directories to create
            self.fs.create_dir(self.parent.path, recursive=True)

    def unlink(self, missing_ok: bool = True) -> None:
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self, ignore_errors: bool = False) -> None:
        """Remove this directory and everything below it; a missing one is no error."""
        with contextlib.suppress(FileNotFoundError):
            try:
                self.fs.delete_dir(self.path)
            except OSError:
                if not ignore_errors:
                    raise

    def move_to(self, target: Location) -> None:
        """Rename this file or directory to ``target`` on the same filesystem (one atomic
        step where ``renames_directories``)."""
        self.fs.move(self.path, target.path)


class AtomicFile:
    """A file written under ``path`` on ``fs`` and put in place by leaving the ``with`` block
    without an error; an error drops it. Local disks: ``path`` is a temporary name beside the
    target, renamed over it (task retries and speculative copies replace each other instead of
    adding files). Object stores and HDFS: ``path`` is the target itself (a PUT appears whole or
    not at all; a failed attempt's file is overwritten by the retry)."""

    def __init__(self, target: Location) -> None:
        self.target, self.fs = target, target.fs
        self.path = target.path
        if target.kind == "local":
            self.path = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp").path

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.close(ok=exc_type is None)

    def close(self, ok: bool) -> None:
        """Put the written file in place (``ok``), or drop it."""
        if self.path == self.target.path:
            return
        if ok:
            os.replace(self.path, self.target.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


AnyPath = Path | Location  # what functions accept that use only the pathlib subset above


def location(uri: str, storage: StorageConfig | None = None) -> Location:
    """The ``Location`` of ``uri``: plain paths and ``file://`` on the local filesystem,
    object-store and HDFS URIs on pyarrow's clients; other schemes are a StorageError."""
    cfg = storage or StorageConfig()
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme == "file":
        return _local(str(Path(uri.removeprefix("file://"))))
    canonical = OBJECT_SCHEMES.get(scheme)
    if canonical is not None:
        return Location(_object_fs(canonical, cfg), rest.rstrip("/"), canonical, "object", "", cfg)
    if scheme == "hdfs":
        host, _, path = rest.partition("/")
        return Location(_hdfs(host), "/" + path.rstrip("/"), "hdfs", "hdfs", host)
    raise StorageError(
        f"unsupported URI scheme {scheme!r} in {uri!r}: use a local path, file://, s3://, "
        "s3a://, gs://, abfs://, abfss:// or hdfs://"
    )


resolve = location  # the name older callers use


def as_location(path: AnyPath) -> Location:
    """``path`` as a ``Location`` (a local ``Path`` from an edge that is local-only)."""
    return path if isinstance(path, Location) else _local(str(path))


def local_only(path: AnyPath, what: str) -> Path:
    """``path`` as a local Path, for features that keep local files only (drift profiles, the
    run report and index); a remote path is refused by name."""
    return as_location(path).local_path(what)


def spark_path(path: Location) -> str:
    """``path`` as Spark's Hadoop filesystems spell it (``s3a://`` for S3)."""
    return path.spark_uri


def is_remote(uri: str) -> bool:
    scheme, sep, _ = uri.partition("://")
    return bool(sep) and scheme != "file"


def spark_uri(uri: str) -> str:
    """The URI Spark understands for ``uri`` (``s3a://`` for ``s3://``)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    canonical = OBJECT_SCHEMES.get(scheme, scheme)
    return f"{SPARK_SCHEMES.get(canonical, scheme)}://{rest}"


def pyarrow_can_read(uri: str) -> bool:
    """Object-store URIs pyarrow opens itself (HDFS needs libhdfs: left to Spark)."""
    return uri.partition("://")[0] in OBJECT_SCHEMES


def lease_root(output_root: str, storage: StorageConfig | None = None) -> Path:
    """Leases need POSIX create-exclusive and ``flock``: for remote roots they live on a local
    (or shared POSIX) directory, one subdirectory per output root."""
    cfg = storage or StorageConfig()
    base = Path(cfg.lease_dir) if cfg.lease_dir else Path(tempfile.gettempdir()) / "bs-leases"
    return base / hashlib.sha1(output_root.rstrip("/").encode()).hexdigest()[:16]


@functools.cache
def _local_fs() -> pafs.FileSystem:
    return pafs.LocalFileSystem()


def _local(path: str) -> Location:
    return Location(_local_fs(), path, "file", "local")


@functools.cache
def _object_fs(scheme: str, cfg: StorageConfig) -> pafs.FileSystem:
    try:
        if scheme == "s3":
            s3 = cfg.s3
            return pafs.S3FileSystem(
                endpoint_override=s3.endpoint_override,
                scheme=s3.scheme,
                region=s3.region,
                access_key=s3.access_key,
                secret_key=s3.secret_key.get_secret_value() if s3.secret_key else None,
                allow_bucket_creation=s3.allow_bucket_creation,
            )
        if scheme == "gs":
            return pafs.GcsFileSystem()
        return pafs.AzureFileSystem(account_name=cfg.azure_account or "")
    except (OSError, ValueError, TypeError) as exc:
        raise StorageError(f"cannot open a {scheme}:// filesystem: {exc}") from None


def _hdfs(host: str) -> pafs.FileSystem:
    name, _, port = host.partition(":")
    try:
        return pafs.HadoopFileSystem(name or "default", int(port or 0))
    except (OSError, ValueError) as exc:
        raise StorageError(
            f"cannot open hdfs://{host}: {exc} (pyarrow needs libhdfs: set HADOOP_HOME and "
            "CLASSPATH as for any libhdfs client)"
        ) from None
