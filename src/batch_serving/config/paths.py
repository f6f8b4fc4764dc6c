"""Where the locations of a job file point: relative paths, SQLite URIs, and overlaps.

Relative paths are made absolute once, at load time, so Spark workers, Airflow tasks and
spark-submit never depend on their own working directory. Overlaps are judged on the real
location (symlinks resolved; URIs by whole path components), because a job that writes into
the table it reads corrupts that table for every Hive-style reader.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Hadoop's connectors for one object store; the same bucket is the same bucket through any.
_SAME_STORE = {"s3a": "s3", "s3n": "s3"}


def project_root(config_path: Path) -> Path:
    """Relative paths in a job file resolve against the directory that holds ``conf/``
    (the project root), so Airflow tasks and spark-submit agree whatever their cwd;
    a file outside any ``conf/`` directory resolves against the working directory."""
    for parent in config_path.resolve().parents:
        if parent.name == "conf":
            return parent.parent
    return Path.cwd()


def absolutize_path(value: str, base: Path | None = None) -> str:
    """A local path made absolute against ``base`` (default: cwd); URIs are left as given."""
    if "://" in value:
        return value
    path = Path(value).expanduser()
    return str((base / path if base is not None else path).resolve())


def absolutize_uri(uri: str, base: Path | None = None) -> str:
    """``sqlite:///rel/x.db`` -> ``sqlite:////abs/rel/x.db``; plain paths -> absolute paths."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + absolutize_path(uri[len(prefix) :], base)
    if "://" not in uri and ":" not in uri[:3]:
        return absolutize_path(uri, base)
    return uri


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI as SQLAlchemy reads it: what follows the
    third slash (``sqlite:////abs/x.db`` -> ``/abs/x.db``). ``urlparse(uri).path`` would give
    ``//abs/x.db``, which pathlib keeps as is (POSIX reserves a leading ``//``) and messages
    then print. None for any other URI."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return Path(uri[len(prefix) :].split("?", 1)[0])


def real_location(location: str) -> str:
    """One spelling per place: local paths (and ``file:`` URIs) with symlinks resolved, other
    URIs as ``scheme://host/normalized/path``, never with a trailing slash (but ``/``)."""
    if "://" not in location:
        return str(Path(location).expanduser().resolve())
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return str(Path(unquote(parts.path) or "/").resolve())
    path = posixpath.normpath(parts.path) if parts.path else ""
    return f"{_SAME_STORE.get(scheme, scheme)}://{parts.netloc.lower()}{path.rstrip('/')}"


def overlap(location: str, other: str) -> str | None:
    """How ``location`` relates to ``other``: ``"is the same location as"``, ``"is inside"``,
    ``"contains"``, or None when neither holds (``s3://b/x`` and ``s3://b/xy`` are apart)."""
    mine, theirs = real_location(location), real_location(other)
    if mine == theirs:
        return "is the same location as"
    if _below(mine, theirs):
        return "is inside"
    if _below(theirs, mine):
        return "contains"
    return None


def _below(child: str, parent: str) -> bool:
    return child.startswith(parent.rstrip("/") + "/")
