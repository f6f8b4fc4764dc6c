"""The scikit-learn estimator names kept for skops (``models.adapters.skops_import``) are the
ones skops builds from the installed scikit-learn: same names, same order, same version."""

from __future__ import annotations

import json

from batch_serving.models.adapters.skops_import import NAMES, known_names, live_names


def test_the_kept_names_are_the_installed_versions() -> None:
    live = live_names()
    kept = json.loads(NAMES.read_text())
    assert kept == live, "regenerate: python -m batch_serving.models.adapters.skops_import"
    assert known_names(live["sklearn"]) == live["names"]
    assert known_names("0.0.0") is None  # another version: skops imports as it always does
