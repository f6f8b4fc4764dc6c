"""A learner snapshot as a registry version: the learner's Pipeline logged with the sklearn
flavor (so the existing sklearn adapter scores it), registered, tagged with where it came
from, and pointed to by the challenger alias. Serving never sees it until ``promote``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from batch_serving.learning.checkpoint import Checkpoint

TAG_PREFIX = "bs."


@dataclass(frozen=True)
class Snapshot:
    """The registered version and its run."""

    name: str
    version: int
    run_id: str
    alias: str


def register_snapshot(
    checkpoint: Checkpoint,
    name: str,
    tracking_uri: str,
    *,
    alias: str = "challenger",
    online_metrics: dict[str, float] | None = None,
    registry_uri: str | None = None,
) -> Snapshot:
    """Log + register the checkpoint's learner and move ``alias`` to the new version; tags:
    label range, labels learned, parent version, online metrics."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    learner = checkpoint.learner
    sample = pd.DataFrame({f: [0.0] for f in learner.features})
    tags = _tags(checkpoint, online_metrics or {})
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    # log_model has no client form: the global tracking URI is pointed at ours meanwhile
    with _use_tracking_uri(tracking_uri), mlflow.start_run(run_name=f"snapshot-{name}") as run:
        mlflow.log_metrics(online_metrics or {})
        mlflow.set_tags(tags)
        info = mlflow.sklearn.log_model(
            learner.pipeline(),
            name="model",
            signature=infer_signature(sample, pd.Series([0.5])),
            registered_model_name=name,
        )
    version = int(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    client.set_registered_model_alias(name, alias, str(version))
    return Snapshot(name, version, run.info.run_id, alias)


def _tags(checkpoint: Checkpoint, online: dict[str, float]) -> dict[str, str]:
    def iso(value: object) -> str:
        return value.isoformat() if hasattr(value, "isoformat") else "none"

    tags = {
        "learner": "sgd_logistic",
        "labels_from": iso(checkpoint.first_event),
        "labels_to": iso(checkpoint.last_event),
        "labels_learned": str(checkpoint.learned),
        "labels_skipped": str(checkpoint.skipped),
        "parent_version": str(checkpoint.parent_version or "none"),
        **{f"online_{k}": f"{v:.6g}" for k, v in online.items()},
    }
    return {TAG_PREFIX + k: v for k, v in tags.items()}
