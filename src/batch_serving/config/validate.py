"""Pydantic's ValidationError as one ConfigError line that names every bad key.

A nightly failure is read from one log line, so each problem is ``dotted.key: message``,
not pydantic's multi-line report with documentation links. A misspelt key also gets the
closest key its section accepts (``output.scroe_column``: did you mean ``output.score_column``?).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from batch_serving.errors import ConfigError

T = TypeVar("T")
Loc = Sequence[int | str]


def validated(
    build: Callable[[dict[str, Any]], T],
    what: str,
    data: dict[str, Any],
    model: type[BaseModel] | None = None,
) -> T:
    """``build(data)``; on failure ``ConfigError("invalid <what>: key: message; ...")``.
    ``model`` (what ``build`` builds) lets an unknown key name the closest known one."""
    try:
        return build(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(err, model) for err in exc.errors())
        raise ConfigError(f"invalid {what}: {problems}") from None


def _problem(err: ErrorDetails, model: type[BaseModel] | None) -> str:
    """A whole-config rule (empty ``loc``) names its keys in its own message."""
    loc, message = err["loc"], err["msg"]
    if err["type"] == "extra_forbidden" and model is not None and loc:
        message += _did_you_mean(model, loc)
    key = ".".join(str(part) for part in loc)
    return f"{key}: {message}" if key else message


def _did_you_mean(model: type[BaseModel], loc: Loc) -> str:
    """``, did you mean 'section.key'?`` for the closest key the enclosing section accepts."""
    known = _keys_at(model, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if not close:
        return ""
    return f", did you mean {'.'.join([*(str(p) for p in loc[:-1]), close[0]])!r}?"


def _keys_at(model: type[BaseModel], path: Loc) -> list[str]:
    """The keys of the model found by walking ``path`` through field annotations (into
    optional sections, ``tuple[X, ...]`` items and ``dict[str, X]`` values); [] if none."""
    annotation: Any = model
    for part in path:
        annotation = next((a for a in map(_child(part), _unwrapped(annotation)) if a), None)
        if annotation is None:
            return []
    found = [a for a in _unwrapped(annotation) if _is_model(a)]
    return list(found[0].model_fields) if found else []


def _child(part: int | str) -> Callable[[Any], Any]:
    """What ``part`` of a value of one (unwrapped) annotation is annotated as, or None."""

    def child(annotation: Any) -> Any:
        if _is_model(annotation):
            field = annotation.model_fields.get(str(part))
            return field.annotation if field is not None else None
        args = get_args(annotation)
        if get_origin(annotation) in (tuple, list) and isinstance(part, int) and args:
            return args[0]
        if get_origin(annotation) is dict and isinstance(part, str) and len(args) == 2:
            return args[1]
        return None

    return child


def _unwrapped(annotation: Any) -> list[Any]:
    """The alternatives of a union (``X | None``) and the type inside ``Annotated``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrapped(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [a for arg in get_args(annotation) for a in _unwrapped(arg)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
