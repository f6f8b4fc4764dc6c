"""Settings of the online-learning loop: the labels source, the learner, the aliases and the
promotion gates. A YAML file of its own (``learning.yaml``) beside the job file, so the job
file's schema is untouched; every key has a default except the features and the labels path.
Its relative paths (labels, checkpoint) resolve like a job file's: against the directory that
holds ``conf/`` (else the working directory), so an Airflow task's temporary working
directory never receives the checkpoint. The learning DAG reads ``conf/learning/<job>.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from batch_serving.config.paths import absolutize_path, project_root
from batch_serving.config.sections import Frozen
from batch_serving.errors import ConfigError


class LabelsConfig(Frozen):
    """The labels table: date-partitioned Parquet (``<partition_column>=YYYY-MM-DD``) with one
    row per labelled outcome."""

    path: str
    """Root of the labels table."""
    partition_column: str = "ds"
    """Name of the date partition column (the directory prefix)."""
    label_column: str = "label"
    """The outcome: 0/1 or false/true."""
    event_time_column: str = "event_time"
    """When the outcome happened; a label is matched to the latest prediction at or before it."""
    prediction_time_column: str = "scored_at"
    """Column of the predictions table that says when a prediction existed (``scored_at``, or
    the partition column ``ds`` read as midnight UTC)."""
    lookback_days: int = Field(default=7, ge=0)
    """How many days of predictions before the first label day are searched for matches."""
    late_days: int = Field(default=7, ge=0)
    """Lateness horizon: a label that arrives behind labels already learned is still learned
    (once) if its event time is at most this many days before the newest label learned;
    older, it is counted as dropped. The checkpoint keeps the keys of this many days."""


class LearnerConfig(Frozen):
    """The online learner: logistic regression trained by plain SGD, one update per label in
    event-time order (scikit-learn ``SGDClassifier.partial_fit`` with ``shuffle=False``: a day's
    batch is exactly the loop of its per-event updates)."""

    features: tuple[str, ...] = Field(min_length=1)
    """Numeric feature columns, in the order the model reads them."""
    learning_rate: float = Field(default=0.01, gt=0)
    """Constant SGD step size: a constant step keeps adapting after concept drift."""
    alpha: float = Field(default=1e-5, ge=0)
    """L2 regularisation strength."""


class GatesConfig(Frozen):
    """Promotion gates: challenger against champion on the same recent labelled rows. Every
    gate must pass for ``@champion`` to move; `null` turns a gate off."""

    metric: Literal["roc_auc", "log_loss"] = "roc_auc"
    """The quality metric the challenger must improve."""
    min_improvement: float = Field(default=0.001, gt=0)
    """By at least this much (absolute: AUC up, log loss down)."""
    max_ece: float | None = Field(default=0.05, gt=0)
    """Calibration: the challenger's expected calibration error (10 equal-width bins) at most."""
    max_score_psi: float | None = Field(default=0.25, gt=0)
    """PSI of the challenger's scores against the champion's on the same rows, at most."""
    max_flip_rate: float | None = Field(default=0.2, gt=0)
    """Share of rows whose action (score >= `threshold`) the challenger changes, at most."""
    threshold: float = Field(default=0.5, gt=0, lt=1)
    """The decision threshold that turns a score into an action."""
    min_rows: int = Field(default=500, ge=1)
    """Fewer labelled rows than this decide nothing: promotion is refused."""


class SnapshotConfig(Frozen):
    """When a learner snapshot is registered as ``@challenger``: when either limit is reached
    since the last snapshot (and something was learned since). Neither set: whenever
    anything was learned since the last snapshot."""

    every_labels: int | None = Field(default=None, ge=1)
    """At least this many labels learned since the last snapshot."""
    every_minutes: float | None = Field(default=None, gt=0)
    """At least this many minutes (wall clock) since the last snapshot was registered."""


class LabelsStreamConfig(Frozen):
    """Labels as a stream: files landing in a directory, read by a Structured Streaming file
    source (``learn-stream``). Column names are the ``labels:`` section's; the entity column is
    the job's first entity column."""

    path: str
    """The directory the label files land in (one landed file is never changed afterwards)."""
    columns: str
    """The files' columns as Spark DDL, e.g. ``"customer_id BIGINT, label INT, event_time
    TIMESTAMP"``: the entity's type must be the predictions' entity type."""
    format: Literal["json", "parquet"] = "json"
    """JSON lines or Parquet."""
    checkpoint: str = "checkpoints/labels-stream"
    """Spark's checkpoint of the query (which files each micro-batch read)."""
    max_files_per_trigger: int = Field(default=1, ge=1)
    """Files per micro-batch."""
    trigger_seconds: int = Field(default=10, ge=1)
    """How often the query looks for new files (not with ``--available-now``)."""


class LearningConfig(Frozen):
    """The whole ``learning.yaml``."""

    labels: LabelsConfig
    learner: LearnerConfig
    champion_alias: str = "champion"
    """The alias that serving scores with; only ``promote``/``rollback`` move it."""
    challenger_alias: str = "challenger"
    """The alias each learner snapshot is registered under."""
    checkpoint: str = "checkpoints/learner.pkl"
    """The learner's checkpoint file (model state + watermark, replaced atomically)."""
    snapshot: SnapshotConfig = SnapshotConfig()
    gates: GatesConfig = GatesConfig()
    labels_stream: LabelsStreamConfig | None = None
    """Labels from a stream of landed files (``learn-stream``); None: the table only."""
    evaluation_days: int = Field(default=7, ge=1)
    """``promote`` compares the models on the labels of the last this-many days."""
    cron: str = "0 6 * * *"
    """When the learning DAG runs (UTC): after the job's nightly score and once the previous
    day's labels are complete; each run learns and promotes on the labels of the day before."""


def load_learning_config(path: str | Path) -> LearningConfig:
    """Read and validate ``learning.yaml``; errors name the file and the key."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read learning config {file}: {exc}") from None
    try:
        cfg = LearningConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"learning config {file}: {problems}") from None
    return _absolute(cfg, project_root(file))


def _absolute(cfg: LearningConfig, base: Path) -> LearningConfig:
    """The labels root and checkpoint as absolute paths against ``base`` (URIs as given)."""
    labels = cfg.labels.model_copy(update={"path": absolutize_path(cfg.labels.path, base)})
    checkpoint = absolutize_path(cfg.checkpoint, base)
    stream = cfg.labels_stream
    if stream is not None:
        paths = {k: absolutize_path(getattr(stream, k), base) for k in ("path", "checkpoint")}
        stream = stream.model_copy(update=paths)
    update = {"labels": labels, "checkpoint": checkpoint, "labels_stream": stream}
    return cfg.model_copy(update=update)
