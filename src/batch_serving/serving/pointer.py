"""Where snapshots live and which one is current: the serving root's layout and its pointer.

Layout under the serving root::

    <model>/snapshots/<snapshot_id>/predictions.arrow + _snapshot.json
    <model>/CURRENT.json     {"current": <snapshot_id>, "history": [older ids, newest first]}

``CURRENT.json`` is replaced with one atomic rename, so a reader sees the old pointer or the new
one, never a mix; snapshots themselves are immutable once renamed into place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batch_serving.config import MODEL_NAME
from batch_serving.errors import ServingStoreError
from batch_serving.serving.records import Pointer

if TYPE_CHECKING:
    from batch_serving.storage import AnyPath

POINTER = "CURRENT.json"


@dataclass(frozen=True)
class ServingLayout:
    """Paths of the snapshot store; model names are validated before any path is built."""

    root: Path

    def model_dir(self, model: str) -> Path:
        return self.root / checked_name(model, "model name")

    def snapshot_dir(self, model: str, snapshot_id: str) -> Path:
        return self.model_dir(model) / "snapshots" / checked_name(snapshot_id, "snapshot id")

    def pointer_path(self, model: str) -> Path:
        return self.model_dir(model) / POINTER

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if MODEL_NAME.fullmatch(p.name) and (p / POINTER).is_file()
        )


def checked_name(name: str, what: str) -> str:
    """A model name or snapshot id, validated before it becomes part of a path."""
    if not MODEL_NAME.fullmatch(name):
        raise ServingStoreError(f"invalid {what} {name!r}")
    return name


def read_pointer(layout: ServingLayout, model: str) -> Pointer | None:
    return read_pointer_file(layout.pointer_path(model))


def read_pointer_file(path: AnyPath) -> Pointer | None:
    """A ``CURRENT.json`` (local or remote); None if there is none yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ServingStoreError(f"unreadable snapshot pointer {path}: {exc}") from None
    return Pointer.from_json(text, f"snapshot pointer {path}")


def write_pointer(layout: ServingLayout, model: str, current: str, history: list[str]) -> None:
    """Atomic switch: write a temp file, fsync, rename over ``CURRENT.json``."""
    write_pointer_file(layout.pointer_path(model), Pointer(current=current, history=history))


def write_pointer_file(path: Path, pointer: Pointer) -> None:
    tmp = path.with_name(f".{POINTER}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(pointer.to_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def next_history(
    current: str | None, history: list[str], new: str, keep: int
) -> tuple[list[str], list[str]]:
    """History after ``new`` becomes current: (retained newest-first, dropped beyond ``keep``).

    One rule for every store: the previous current goes first, ``new`` never appears in it.
    """
    older = ([current] if current else []) + [h for h in history if h != new]
    return older[: keep - 1], older[keep - 1 :]
