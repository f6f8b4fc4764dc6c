"""The run manifest: one typed record of what a committed partition holds and how it was made.

Written ONCE, inside the staged partition, before the swap; never rewritten afterwards. What
happens after the commit (SQL tables, the MLflow run record) is written to the run's own
``AfterCommit`` record under ``_runs/``, so a partition's manifest always describes the files
beside it. Readers (publish, checks, summaries) use these classes, never string keys.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, ValidationError

from batch_serving.errors import StorageError
from batch_serving.scoring.cascade_check import StageEvidence
from batch_serving.storage import AnyPath, Location, as_location

MANIFEST_NAME = "_manifest.json"
AFTER_COMMIT_NAME = "_after_commit.json"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ModelSection(_Record):
    name: str
    version: int
    alias: str | None = None
    run_id: str | None = None
    uri: str
    artifact_uri: str
    registry_uri: str


class ScoringSection(_Record):
    engine: str
    kind: str
    features: list[str]
    classes: list[str] = []
    positive_label: str | None = None
    output_columns: list[str]
    member_columns: list[str] = []
    delivery: str
    artifact_mb: float
    model_loads: int
    python_workers: int
    cascade: list[StageEvidence] = []  # one per stage, in order (cascade jobs)


class MemberSection(_Record):
    """One model of a multi-model run: which version, its role, how it reached the workers."""

    key: str
    role: str
    name: str
    version: int
    alias: str | None = None
    run_id: str | None = None
    uri: str
    kind: str
    inputs: list[str] | None = None
    delivery: str
    model_loads: int
    python_workers: int


class InputFile(_Record):
    """One data file a run read: its name below the input partition, its size and mtime."""

    name: str
    bytes: int
    mtime_ns: int

    @classmethod
    def of(cls, partition: AnyPath, path: AnyPath) -> InputFile:
        """``path`` (a data file below ``partition``) as it is now; FileNotFoundError if gone."""
        where, file = as_location(partition), as_location(path)
        info = file.fs.get_file_info(file.path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(file.uri)
        name = file.relative_to(where).as_posix()
        return cls(name=name, bytes=int(info.size), mtime_ns=int(info.mtime_ns or 0))


class InputSection(_Record):
    path: str
    rows: int
    # the data files the run read (publish builds the feature snapshot from exactly these);
    # None: not recorded (Spark listed a remote partition itself, or an older run)
    files: list[InputFile] | None = None


class QuarantineSection(_Record):
    path: str
    rows: int
    max_bad_rows: int | str


class OutputSection(_Record):
    path: str
    rows: int
    files: int
    table_version: int | None = None  # Delta: the version the commit made (set right after it)


class GateSummary(_Record):
    success: bool
    checked: int
    warnings: list[str] = []


class RunManifest(_Record):
    job: str
    run_id: str
    run_date: str
    started_at: str
    config_digest: str
    model: ModelSection
    scoring: ScoringSection
    input: InputSection
    quarantine: QuarantineSection
    output: OutputSection
    versions: dict[str, str]
    validation: dict[str, GateSummary] = {}
    durations_s: dict[str, float] = {}
    members: list[MemberSection] = []
    ensemble: str | None = None
    rules: list[str] = []
    comparison: dict[str, dict[str, Any]] = {}  # shadow key -> ComparisonSummary.to_dict()
    drift: dict[str, Any] = {}  # monitoring: references, per-column PSI/JS/KS, gate outcome
    staging_removed: list[str] = []  # staging of dead runs this run removed (tables.staging)

    def failed_gates(self) -> list[str]:
        return [name for name, gate in self.validation.items() if not gate.success]


class TimelineSpan(_Record):
    """One span of a run's timeline (``runs.timeline``): seconds since its process started;
    ``lane`` is the thread it ran on ("main", or a background thread overlapping others)."""

    name: str
    start_s: float
    end_s: float
    lane: str = "main"


class AfterCommit(_Record):
    """What the post-commit steps did for a run (they never touch the committed manifest)."""

    run_id: str
    partition: str
    tables: list[str] = []
    mlflow_run_id: str | None = None
    tracking_enabled: bool = False
    durations_s: dict[str, float] = {}  # every step of the run, the commit included
    skipped: str | None = None  # why the steps did not run (the partition holds another run)
    timeline: list[TimelineSpan] = []  # every span of the run, post-commit steps included


def write_json(path: AnyPath, record: BaseModel) -> Location:
    """Write ``record`` atomically (temp file + rename; one PUT on object stores): a reader
    never sees half a file."""
    target = as_location(path)
    target.write_atomic(
        (json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()
    )
    return target


def write_manifest(directory: AnyPath, manifest: RunManifest) -> Location:
    return write_json(directory / MANIFEST_NAME, manifest)


R = TypeVar("R", bound=_Record)


def _read(path: AnyPath, kind: type[R]) -> R | None:
    try:
        return kind.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        raise StorageError(f"unreadable {kind.__name__} record {path}: {exc}") from None


def read_manifest(partition_dir: AnyPath) -> RunManifest | None:
    """The partition's manifest; None if it has none; StorageError if it is unreadable."""
    return _read(partition_dir / MANIFEST_NAME, RunManifest)


def committed_run_id(partition_dir: AnyPath) -> str | None:
    """Which run's data the partition holds right now (None: no committed manifest)."""
    manifest = read_manifest(partition_dir)
    return manifest.run_id if manifest else None


def read_after_commit(run_dir: AnyPath) -> AfterCommit | None:
    return _read(run_dir / AFTER_COMMIT_NAME, AfterCommit)
