"""The learner's checkpoint: model state AND the watermark of the last label it learned (and
the keys of the labels handled within the lateness horizon behind it), in ONE file replaced
atomically (write a temp file, fsync, rename), so they never disagree.

A crash before the rename leaves the previous checkpoint: the restart relearns from its
watermark what the dead process had learned in memory only, so nothing is learned twice
(that process's model died with it) and nothing is lost.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from batch_serving.errors import StorageError
from batch_serving.learning.learner import OnlineLearner

Watermark = tuple[dt.datetime, str]  # (event time, entity id) of the last label learned


@dataclass(frozen=True)
class LabelKeys:
    """Identities of labels, (event time in ns since the epoch, entity id as text), as two
    parallel columns: pickled fast and looked up in one vectorised join (a set of tuples
    made the checkpoint write several times slower than the learning)."""

    times: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    entities: np.ndarray = field(default_factory=lambda: np.empty(0, object))

    def __len__(self) -> int:
        return len(self.times)


_FORMAT = 1


@dataclass
class Checkpoint:
    """Everything a restart needs: the learner, where it stopped, and what it has seen."""

    learner: OnlineLearner
    watermark: Watermark | None = None
    skipped: int = 0  # labels passed over (null feature or label): counted, never learned
    first_event: dt.datetime | None = None
    last_event: dt.datetime | None = None
    parent_version: int | None = None  # the registry version the learner started from
    snapshot_learned: int = 0  # ``learned`` when the last snapshot was registered
    snapshot_version: int | None = None  # that snapshot's registry version
    snapshot_at: dt.datetime | None = None  # wall clock (UTC) of that registration
    # keys of the labels handled (learned or skipped) within the lateness horizon behind the
    # watermark: a late label is learned once, a rerun finds its keys here
    seen_keys: LabelKeys = field(default_factory=LabelKeys)
    late_learned: int = 0  # labels learned behind the watermark (late arrivals)
    keys_from: dt.datetime | None = None  # no keys kept for event times at or before this
    stream_batch: tuple[str, int] | None = None  # (Spark query id, batch id) last learned
    format: int = _FORMAT

    @property
    def snapshot_due(self) -> bool:
        """Labels were learned since the last registered snapshot (also after a run that
        learned but crashed or lost the registry before registering)."""
        return self.learned > self.snapshot_learned

    @property
    def learned(self) -> int:
        return self.learner.learned


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> Path:
    """Replace ``path`` atomically with ``checkpoint``; returns the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            pickle.dump(checkpoint, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, None if there is none yet; a bad file is a StorageError."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as src:
            checkpoint = pickle.load(src)  # our own file: written only by save_checkpoint
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
        raise StorageError(f"learner checkpoint {path} is unreadable: {exc}") from None
    if not isinstance(checkpoint, Checkpoint) or checkpoint.format != _FORMAT:
        raise StorageError(f"{path} is not a learner checkpoint of format {_FORMAT}")
    if "seen_keys" not in vars(checkpoint):  # written before label keys were kept
        checkpoint.seen_keys = LabelKeys()
        checkpoint.keys_from = checkpoint.watermark[0] if checkpoint.watermark else None
    return checkpoint


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
