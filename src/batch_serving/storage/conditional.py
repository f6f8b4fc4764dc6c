"""Conditional writes on an object store: create-if-absent, replace and delete only one version.

An object store has no exclusive create, rename or ``flock``, but S3 (like GCS and Azure Blob)
answers conditional requests atomically: ``PUT`` with ``If-None-Match: *`` succeeds only if
the key is absent, ``PUT``/``DELETE`` with ``If-Match: <etag>`` only if the key still holds
that exact version. That is a compare-and-swap on one key, enough for a lease that holds
across hosts (``tables.object_lease``). ``ConditionalObjects`` is the seam; ``S3Objects`` is
its S3 implementation over boto3 (imported when a lease is first taken). Failures other than
"not that version" are raised as ``OSError`` naming the key, like a filesystem error.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from batch_serving.config.sections import S3Config
from batch_serving.storage.location import Location

# "changed": the key holds another version (or none); "unsupported": the store refuses a
# conditional delete (the caller then releases with a conditional PUT instead)
Deleted = Literal["deleted", "changed", "unsupported"]

# what S3 answers when a condition does not hold: 412, a concurrent conflicting write (409),
# or the key is gone (404 on If-Match)
_NOT_THAT_VERSION = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404"}
_REFUSED = {"NotImplemented", "InvalidArgument", "InvalidRequest"}


@dataclass(frozen=True)
class Version:
    """One read of a key: its bytes, its ETag and when the store last wrote it (epoch s)."""

    data: bytes
    etag: str
    modified: float


class ConditionalObjects(Protocol):
    """Keys of one bucket with compare-and-swap writes; every write returns the new ETag."""

    def uri(self, key: str) -> str:
        """The key as a URI, for messages."""
        ...

    def read(self, key: str) -> Version | None:
        """The key's current version, None if it does not exist."""
        ...

    def create(self, key: str, data: bytes) -> str | None:
        """Write ``key`` only if it does not exist; None if it does."""
        ...

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        """Overwrite ``key`` only if it still holds version ``etag``; None if not."""
        ...

    def delete(self, key: str, etag: str) -> Deleted:
        """Delete ``key`` only if it still holds version ``etag``."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """Keys below ``prefix``."""
        ...


class S3Objects:
    """``ConditionalObjects`` on one S3 bucket, reached as ``storage.s3`` says (endpoint,
    credentials or the AWS chain), path-style like pyarrow's client on an endpoint override."""

    def __init__(self, bucket: str, cfg: S3Config) -> None:
        self.bucket, self.cfg = bucket, cfg
        self._lock = threading.Lock()
        self._client: Any = None

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def read(self, key: str) -> Version | None:
        try:
            got = self._s3().get_object(Bucket=self.bucket, Key=key)
            data = got["Body"].read()
        except Exception as error:
            if _code(error) in ("NoSuchKey", "404"):
                return None
            raise self._os_error("read", key, error) from None
        return Version(bytes(data), str(got["ETag"]), got["LastModified"].timestamp())

    def create(self, key: str, data: bytes) -> str | None:
        return self._put(key, data, IfNoneMatch="*")

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        return self._put(key, data, IfMatch=etag)

    def delete(self, key: str, etag: str) -> Deleted:
        try:
            self._s3().delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
        except Exception as error:
            code = _code(error)
            if code in _NOT_THAT_VERSION:
                return "changed"
            if code in _REFUSED:
                return "unsupported"
            raise self._os_error("delete", key, error) from None
        return "deleted"

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        try:
            pages = self._s3().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend(item["Key"] for item in page.get("Contents", []))
        except Exception as error:
            raise self._os_error("list", prefix, error) from None
        return found

    def _put(self, key: str, data: bytes, **condition: str) -> str | None:
        for attempt in range(2):
            try:
                put = self._s3().put_object(Bucket=self.bucket, Key=key, Body=data, **condition)
            except Exception as error:
                code = _code(error)
                if code in _NOT_THAT_VERSION:
                    return None
                if code == "NoSuchBucket" and self.cfg.allow_bucket_creation and attempt == 0:
                    self._create_bucket()
                    continue
                raise self._os_error("write", key, error) from None
            return str(put["ETag"])
        return None  # unreachable: the second attempt returns or raises

    def _create_bucket(self) -> None:
        """``allow_bucket_creation`` (test servers): the lease may be the bucket's first write."""
        try:
            self._s3().create_bucket(Bucket=self.bucket)
        except Exception as error:
            if _code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._os_error("create the bucket of", "", error) from None

    def _s3(self) -> Any:
        """The boto3 client, made once (clients are thread-safe; heartbeats share it)."""
        with self._lock:
            if self._client is None:
                self._client = _client(self.cfg)
            return self._client

    def _os_error(self, what: str, key: str, error: Exception) -> OSError:
        return OSError(f"cannot {what} {self.uri(key)}: {error}")


def conditional_objects(root: Location) -> ConditionalObjects | None:
    """Conditional writes on the bucket of ``root``; None where none is implemented here
    (local and HDFS roots, GCS, Azure)."""
    if root.kind != "object" or root.scheme != "s3" or root.storage is None:
        return None
    return S3Objects(root.path.split("/", 1)[0], root.storage.s3)


def object_key(root: Location, *parts: str) -> str:
    """The key of ``parts`` below ``root`` inside its bucket."""
    below = root.path.split("/", 1)[1] if "/" in root.path else ""
    return "/".join(p for p in (below.strip("/"), *parts) if p)


@functools.cache
def _client(cfg: S3Config) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise OSError(
            "boto3 is not installed: pip install 'batch-serving[s3]' (conditional writes), "
            "or set storage.lease_dir to keep the leases as files"
        ) from None

    endpoint = f"{cfg.scheme}://{cfg.endpoint_override}" if cfg.endpoint_override else None
    secret = cfg.secret_key.get_secret_value() if cfg.secret_key else None
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=cfg.region,
        aws_access_key_id=cfg.access_key,
        aws_secret_access_key=secret,
        config=Config(
            s3={"addressing_style": "path" if endpoint else "auto"},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=30,
        ),
    )


def _code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
