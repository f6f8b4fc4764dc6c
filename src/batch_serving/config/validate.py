"""Pydantic's ValidationError as one ConfigError line that names every bad key.

A nightly failure is read from one log line, so each problem is ``dotted.key: message``,
not pydantic's multi-line report with documentation links.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from batch_serving.errors import ConfigError

T = TypeVar("T")


def validated(build: Callable[[dict[str, Any]], T], what: str, data: dict[str, Any]) -> T:
    """``build(data)``; on failure ``ConfigError("invalid <what>: key: message; ...")``."""
    try:
        return build(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(err["loc"], err["msg"]) for err in exc.errors())
        raise ConfigError(f"invalid {what}: {problems}") from None


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """A whole-config rule (empty ``loc``) names its keys in its own message."""
    key = ".".join(str(part) for part in loc)
    return f"{key}: {message}" if key else message
