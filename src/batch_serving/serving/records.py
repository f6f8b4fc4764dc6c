"""Typed serving records: a snapshot's ``_snapshot.json``, a model's ``CURRENT.json`` pointer and
the feature snapshot's manifest (what live scoring needs to reproduce the batch's answer).

Publish writes them and the API, the Redis store and the live path read them through these
classes, never by string key. The JSON stays what it always was: a record keeps the keys it
was given and only those (``to_dict`` dumps what was set), unknown keys are carried along
(``extra="allow"``: a newer publisher's field survives an older reader's round trip), and a
manifest written before a field existed still loads (every later field has a default).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from batch_serving.config.cascade import CascadeConfig
from batch_serving.errors import ServingStoreError


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: object = "") -> Self:
        """The record, or a ServingStoreError naming ``where`` (what was read) and the bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ServingStoreError(f"unreadable {where or cls.__name__}: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes, where: object = "") -> Self:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ServingStoreError(f"unreadable {where or cls.__name__}: {exc}") from None
        if not isinstance(data, dict):
            raise ServingStoreError(f"unreadable {where or cls.__name__}: not a JSON object")
        return cls.from_dict(data, where)

    def to_dict(self) -> dict[str, Any]:
        """Exactly the keys this record was built with (plus extras): the on-disk JSON."""
        return self.model_dump(mode="json", exclude_unset=True)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)


class Pointer(_Record):
    """``CURRENT.json``: the snapshot readers use, and the previously current ones newest first."""

    current: str
    history: list[str] = []

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current, "history": list(self.history)}


class NumpyColumn(_Record):
    """Where a fixed-width column's data buffer starts in the IPC file, and its numpy dtype."""

    offset: int
    dtype: str


class SnapshotHeader(_Record):
    """What publish says about a snapshot (which run of which model); ``write_snapshot`` adds
    the file's layout. Only the id is required: a hand-built snapshot may carry no more."""

    snapshot_id: str
    model: str | None = None
    model_version: int | None = None
    model_uri: str | None = None
    run_date: str | None = None
    run_id: str | None = None
    job: str | None = None
    entity_columns: list[str] | None = None
    scoring_kind: str | None = None
    source_partition: str | None = None
    published_at: str | None = None


class _Layout(_Record):
    """The file's layout, computed by ``write_snapshot`` (``buckets``: added by Redis)."""

    format: str | None = None
    rows: int
    key_type: str
    value_columns: list[str]
    served_columns: list[str] | None = None  # only a multi-model snapshot names both sets
    member_columns: list[str] = []  # member structs, answered on request
    bytes: int | None = None
    sha256: str | None = None
    numpy_columns: dict[str, NumpyColumn] | None = None
    buckets: int | None = None

    @property
    def served(self) -> list[str]:
        """Value columns answered by default (all of them in a single-model snapshot)."""
        return list(self.served_columns if self.served_columns is not None else self.value_columns)


@dataclass(frozen=True)
class Provenance:
    """What every API answer says about where its values come from."""

    model_version: int
    run_date: str
    run_id: str
    published_at: str


class SnapshotManifest(_Layout, SnapshotHeader):
    """``_snapshot.json`` of a published snapshot (and, with ``buckets``, its Redis meta key)."""

    def provenance(self) -> Provenance:
        """The fields an API answer needs; a snapshot published without one is named."""
        found = {
            "model_version": self.model_version,
            "run_date": self.run_date,
            "run_id": self.run_id,
            "published_at": self.published_at,
        }
        missing = [k for k, v in found.items() if v is None]
        if missing:
            raise ServingStoreError(f"snapshot {self.snapshot_id} has no {missing} in its manifest")
        return Provenance(
            int(self.model_version or 0),
            str(self.run_date),
            str(self.run_id),
            str(self.published_at),
        )

    def with_buckets(self, buckets: int) -> SnapshotManifest:
        return SnapshotManifest.from_dict({**self.to_dict(), "buckets": buckets})


class PinnedMember(_Record):
    """One model of a multi-model job at the version the run scored with (never an alias)."""

    key: str
    role: str
    name: str
    version: int
    alias: str | None = None
    run_id: str | None = None
    uri: str | None = None
    inputs: list[str] | None = None
    tracking_uri: str | None = None
    registry_uri: str | None = None
    positive_label: str | int | None = None
    skops_trusted_types: list[str] = []


class FeatureHeader(SnapshotHeader):
    """What the live path needs to score a missing id like the batch did (``features.py``)."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    positive_label: str | int | None = None
    score_column: str = "score"
    rules: list[dict[str, Any]] = []
    ensemble: str | None = None
    members: list[PinnedMember] = []  # empty: a single-model job (or one published before)
    ensemble_config: dict[str, Any] | None = None
    champion_features: list[str] | None = None
    # the job's cascade: live answers come from the answering stage (None: no cascade, or a
    # manifest published before cascades travelled; see ``api/live_fallback.py``)
    cascade: CascadeConfig | None = None


class FeatureManifest(_Layout, FeatureHeader):
    """A feature snapshot's manifest; also read from a predictions manifest for ``:score``
    when a model has no feature snapshot (then only the model fields are known)."""

    @classmethod
    def of(cls, manifest: SnapshotManifest) -> FeatureManifest:
        return cls.from_dict(manifest.to_dict(), f"feature manifest of {manifest.snapshot_id}")
