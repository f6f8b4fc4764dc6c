"""``skops.io`` imported without importing every scikit-learn module first.

On import, skops lists every scikit-learn estimator (``sklearn.utils.all_estimators()``, which
imports each of sklearn's modules, pytest among them) only to build the names of the types it
trusts by default: ~2.5 s of CPU in the driver and again in each Python worker that loads a
model, before any model is read. The names depend only on the scikit-learn version, so the
ones of the pinned version are kept in ``sklearn_estimators.json``; with that version
installed, skops builds the very same list from them (``tests/unit/models`` checks it against
the live one), with another version it imports as it always does.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

NAMES = Path(__file__).with_name("sklearn_estimators.json")


class _Named:
    """What skops reads of an estimator class to name it: its module and its name."""

    def __init__(self, module: str, name: str) -> None:
        self.__module__ = module
        self.__name__ = name


def known_names(version: str) -> list[str] | None:
    """The estimator type names kept for scikit-learn ``version`` (None: not that version)."""
    try:
        data = json.loads(NAMES.read_text())
    except (OSError, ValueError):
        return None
    return list(data["names"]) if data.get("sklearn") == version else None


_IMPORTING = threading.Lock()  # one patched import at a time (models load on threads too)


def import_skops_io() -> ModuleType:
    """``skops.io``, its default trusted types built from the kept names when they match."""
    with _IMPORTING:
        return _import_skops_io()


def _import_skops_io() -> ModuleType:
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import sklearn.utils

    names = known_names(sklearn.__version__)
    if names is None:
        import skops.io

        return skops.io
    listed = [(n.rpartition(".")[2], _Named(*n.rsplit(".", 1))) for n in names]
    real = sklearn.utils.all_estimators

    def kept(*args: Any, **kwargs: Any) -> list[tuple[str, Any]]:
        return listed

    sklearn.utils.all_estimators = kept
    try:
        import skops.io
    finally:
        sklearn.utils.all_estimators = real
    return skops.io


def live_names() -> dict[str, Any]:
    """The names as skops builds them by listing the installed scikit-learn (slow): what
    ``sklearn_estimators.json`` holds for its version."""
    import sklearn
    from sklearn.utils import all_estimators
    from skops.io._utils import get_type_name

    names = [get_type_name(cls) for _, cls in all_estimators()]
    return {"sklearn": sklearn.__version__, "names": [n for n in names if n.startswith("sklearn.")]}


if __name__ == "__main__":  # python -m batch_serving.models.adapters.skops_import > the file
    print(json.dumps(live_names(), indent=1))
