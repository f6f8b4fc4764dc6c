"""The ``ensemble:`` section's checks, run at config load (the combining is in
``scoring.ensemble``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

from batch_serving.errors import ConfigError

Method = Literal["mean", "weighted_mean", "vote", "max"]
METHODS: tuple[str, ...] = get_args(Method)


def checked_ensemble(
    members: Sequence[str],
    method: str,
    weights: Sequence[float] | None = None,
    threshold: float = 0.5,
    where: str = "ensemble",
) -> tuple[tuple[str, ...], str, tuple[float, ...] | None, float]:
    """(members, method, weights, threshold) checked; ConfigError naming ``<where>.<key>``."""
    keys = tuple(members)
    if len(keys) < 2:
        raise ConfigError(
            f"{where}.members: an ensemble needs at least 2 members, got {list(keys)}"
        )
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ConfigError(f"{where}.members: duplicate member(s) {duplicated} in {list(keys)}")
    if method not in METHODS:
        raise ConfigError(
            f"{where}.method: unknown method {method!r}; expected one of {', '.join(METHODS)}"
        )
    if not math.isfinite(threshold):
        raise ConfigError(f"{where}.threshold: must be a finite number, got {threshold!r}")
    checked = _checked_weights(keys, method, weights, where)
    return keys, method, checked, float(threshold)


def _checked_weights(
    members: tuple[str, ...], method: str, weights: Sequence[float] | None, where: str
) -> tuple[float, ...] | None:
    """Weights belong to weighted_mean only: one per member, none negative, not all zero."""
    if method != "weighted_mean":
        if weights is not None:
            raise ConfigError(
                f"{where}.weights: weights are only used by method weighted_mean, not {method!r}"
            )
        return None
    if weights is None:
        raise ConfigError(f"{where}.weights: method weighted_mean needs one weight per member")
    try:
        values = tuple(float(w) for w in weights)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.weights: weights must be numbers, got {weights!r}") from None
    if len(values) != len(members):
        raise ConfigError(
            f"{where}.weights: {len(values)} weights {list(values)} for "
            f"{len(members)} members {list(members)}"
        )
    bad = [w for w in values if not (math.isfinite(w) and w >= 0)]
    if bad:
        raise ConfigError(f"{where}.weights: weights must be finite and >= 0, got {list(values)}")
    if sum(values) <= 0:
        raise ConfigError(f"{where}.weights: weights must not all be zero, got {list(values)}")
    return values
