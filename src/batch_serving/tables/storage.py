"""Storage: the ONE module that turns a URI into a filesystem and a path (issue #12).

``resolve(uri)`` gives a plain ``pathlib.Path`` for local paths (plain or ``file://``), so local
behaviour is exactly what it always was, and a ``Location`` (a pyarrow filesystem + a path on it)
for ``s3://``/``s3a://``, ``gs://``, ``abfs://``/``abfss://`` and ``hdfs://``. ``Location`` offers
the small pathlib subset the tables code uses (``/``, ``name``, ``is_dir``, ``read_text`` ...),
pickles (executors get the filesystem with the task) and never needs Hadoop jars (pyarrow's own
S3/GCS/Azure clients; HDFS goes through libhdfs).

Object stores have no atomic directory rename: ``commits_by_pointer`` says which commit protocol
a location needs (see ``tables.object_commit``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow.fs as pafs

from batch_serving.config.sections import StorageConfig
from batch_serving.errors import StorageError

OBJECT_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs", "abfs": "abfs", "abfss": "abfs"}
SPARK_SCHEMES = {"s3": "s3a", "gs": "gs", "abfs": "abfss", "hdfs": "hdfs"}
Kind = Literal["local", "object", "hdfs"]


@dataclass(frozen=True)
class Location:
    """A path on a pyarrow filesystem; ``path`` is the filesystem's own form (``bucket/key`` on
    S3, ``/abs/dir`` locally), ``scheme`` the canonical URI scheme (``s3``, ``gs`` ...)."""

    fs: pafs.FileSystem
    path: str
    scheme: str
    kind: Kind
    authority: str = ""  # hdfs: the namenode (S3/GCS/Azure paths start with the bucket)

    # --- pathlib-like -------------------------------------------------------------------
    def __truediv__(self, part: str) -> Location:
        path = f"{self.path.rstrip('/')}/{part}"
        return Location(self.fs, path, self.scheme, self.kind, self.authority)

    def __str__(self) -> str:
        return self.uri

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

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        parent = self.path.rstrip("/").rsplit("/", 1)[0]
        return Location(self.fs, parent, self.scheme, self.kind, self.authority)

    def with_name(self, name: str) -> Location:
        return self.parent / name

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
            yield Location(self.fs, info.path, self.scheme, self.kind, self.authority)

    def glob(self, pattern: str) -> Iterator[Location]:
        """Direct children whose name matches ``pattern`` (no ``**``)."""
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    def infos(self) -> list[pafs.FileInfo]:
        """Every file below this directory (recursive), with sizes and mtimes."""
        selector = pafs.FileSelector(self.path, recursive=True, allow_not_found=True)
        return [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as fh:
            return bytes(fh.read())

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """One PUT on object stores: the object appears whole or not at all."""
        if self.kind != "object":  # object stores have no directories to create
            self.fs.create_dir(self.parent.path, recursive=True)
        with self.fs.open_output_stream(self.path) as fh:
            fh.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def unlink(self, missing_ok: bool = True) -> None:
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(self.path)


AnyPath = Path | Location


def resolve(uri: str, storage: StorageConfig | None = None) -> AnyPath:
    """A local ``Path`` for plain paths and ``file://``; a ``Location`` for every other scheme."""
    scheme, sep, _ = uri.partition("://")
    if not sep or scheme == "file":
        return Path(uri.removeprefix("file://"))
    return location(uri, storage)


def location(uri: str, storage: StorageConfig | None = None) -> Location:
    """Always a ``Location``: local paths get pyarrow's LocalFileSystem (used to run the
    object-store commit protocol on a local disk, ``storage.commit: pointer``)."""
    cfg = storage or StorageConfig()
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme == "file":
        path = str(Path(uri.removeprefix("file://")).absolute())
        return Location(pafs.LocalFileSystem(), path, "file", "local")
    canonical = OBJECT_SCHEMES.get(scheme)
    if canonical is not None:
        return Location(_object_fs(canonical, cfg), rest.rstrip("/"), canonical, "object")
    if scheme == "hdfs":
        host, _, path = rest.partition("/")
        return Location(_hdfs(host), "/" + path.rstrip("/"), "hdfs", "hdfs", host)
    raise StorageError(
        f"unsupported URI scheme {scheme!r} in {uri!r}: use a local path, file://, s3://, "
        "s3a://, gs://, abfs://, abfss:// or hdfs://"
    )


def local_only(path: AnyPath, what: str) -> Path:
    """``path`` as a local Path, for features that keep local files only (drift profiles, the
    run report and index); an object-store path is refused by name."""
    if isinstance(path, Location):
        raise StorageError(f"{what} needs a local output.root; {path} is on an object store")
    return path


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


def commits_by_pointer(root: AnyPath, storage: StorageConfig | None = None) -> bool:
    """Pointer protocol where there is no atomic directory rename (object stores), or when
    configured; the two-rename swap on local disks and HDFS."""
    mode = (storage or StorageConfig()).commit
    if mode == "auto":
        return isinstance(root, Location) and root.kind == "object"
    return mode == "pointer"


def lease_root(output_root: str, storage: StorageConfig | None = None) -> Path:
    """Leases need POSIX create-exclusive and ``flock``: for remote roots they live on a local
    (or shared POSIX) directory, one subdirectory per output root."""
    cfg = storage or StorageConfig()
    base = Path(cfg.lease_dir) if cfg.lease_dir else Path(tempfile.gettempdir()) / "bs-leases"
    return base / hashlib.sha1(output_root.rstrip("/").encode()).hexdigest()[:16]


def parquet_source(path: AnyPath) -> tuple[str, pafs.FileSystem | None]:
    """(path, filesystem) as pyarrow's Parquet readers and writers take them."""
    if isinstance(path, Location):
        return path.path, path.fs
    return str(path), None


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


def spark_path(path: AnyPath) -> str:
    """``path`` as Spark's Hadoop filesystems spell it (``s3a://`` for S3)."""
    return path.spark_uri if isinstance(path, Location) else str(path)


def pyarrow_can_read(uri: str) -> bool:
    """Object-store URIs pyarrow opens itself (HDFS needs libhdfs: left to Spark)."""
    return uri.partition("://")[0] in OBJECT_SCHEMES
