"""Gated promotion and one-command rollback of ``@champion``.

``promote`` pins both aliases to versions, scores the same recent labelled rows with both
through the normal scoring path (``notebook.score_frame``: what serving would compute),
judges the challenger with the gates, records the evidence (an MLflow run with both models'
metrics and every gate, plus registry tags), and moves ``@champion`` only if every gate
passed; otherwise it raises ``PromotionGateError`` (exit 11) naming the failed gates.

``rollback`` moves ``@champion`` back to the version the last promotion replaced (the
registered model's ``bs.previous_champion`` tag), recorded the same way. Alias moves are one
registry call each: a rollback takes seconds and needs no data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from batch_serving.errors import PromotionGateError, RegistryError
from batch_serving.learning.gates import GateReport, evaluate_gates
from batch_serving.learning.settings import GatesConfig
from batch_serving.learning.snapshots import TAG_PREFIX

EXPERIMENT = "batch-serving-promotions"
PREVIOUS = TAG_PREFIX + "previous_champion"


@dataclass(frozen=True)
class Target:
    """Which registered model, in which registry, and its two aliases."""

    name: str
    tracking_uri: str
    registry_uri: str | None = None
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"


@dataclass(frozen=True)
class PromotionResult:
    """What ``promote`` decided, on which versions and data, and where the evidence is."""

    name: str
    champion_before: int
    challenger: int
    promoted: bool
    report: GateReport
    run_id: str
    data_range: tuple[str, str]


@dataclass(frozen=True)
class RollbackResult:
    name: str
    rolled_back_from: int
    champion: int
    run_id: str


def promote(
    target: Target,
    evaluation: pd.DataFrame,
    features: tuple[str, ...],
    gates: GatesConfig,
    *,
    label_column: str = "label",
    actor: str,
    data_range: tuple[str, str],
) -> PromotionResult:
    """Champion vs challenger on ``evaluation`` (labelled rows with the input columns
    ``features``: each version is scored from them as serving would, reading its own)."""
    client = _client(target)
    champion = _version_of(client, target, target.champion_alias)
    challenger = _version_of(client, target, target.challenger_alias)
    if champion == challenger:
        raise RegistryError(
            f"{target.name}@{target.challenger_alias} is version {challenger}, which is "
            f"already @{target.champion_alias}: nothing to promote"
        )
    labels = evaluation[label_column].astype(np.int64).to_numpy()
    report = evaluate_gates(
        labels,
        _scores(target, champion, evaluation, features),
        _scores(target, challenger, evaluation, features),
        gates,
    )
    run_id = _record_promotion(client, target, champion, challenger, report, actor, data_range)
    result = PromotionResult(
        target.name, champion, challenger, report.passed, report, run_id, data_range
    )
    if not report.passed:
        client.set_model_version_tag(
            target.name, str(challenger), TAG_PREFIX + "refused_by_run", run_id
        )
        error = PromotionGateError(_refusal(target, champion, challenger, report))
        error.report = report
        raise error
    _move_champion(client, target, champion, challenger, actor, run_id, data_range)
    return result


def rollback(target: Target, *, actor: str) -> RollbackResult:
    """``@champion`` back to the version the last promotion replaced; fails (RegistryError)
    when no promotion is recorded since the last rollback."""
    client = _client(target)
    current = _version_of(client, target, target.champion_alias)
    tags = client.get_registered_model(target.name).tags or {}
    previous = tags.get(PREVIOUS)
    if previous is None:
        raise RegistryError(
            f"nothing to roll back to: {target.name} has no {PREVIOUS} tag (set by `promote`, "
            f"cleared by `rollback`); @{target.champion_alias} stays version {current}"
        )
    client.get_model_version(target.name, previous)  # still exists (raises otherwise)
    run_id = _record(
        client,
        f"rollback-{target.name}",
        {"action": "rollback", "model": target.name, "actor": actor},
        {"rolled_back_from": str(current), "champion": previous},
        {},
    )
    client.set_registered_model_alias(target.name, target.champion_alias, previous)
    now = _now()
    client.set_registered_model_tag(target.name, TAG_PREFIX + "rolled_back_from", str(current))
    client.set_registered_model_tag(target.name, TAG_PREFIX + "last_change_run", run_id)
    client.delete_registered_model_tag(target.name, PREVIOUS)
    for key, value in {"rolled_back_to_at": now, "rolled_back_by": actor}.items():
        client.set_model_version_tag(target.name, previous, TAG_PREFIX + key, value)
    return RollbackResult(target.name, current, int(previous), run_id)


def _client(target: Target) -> Any:
    from mlflow import MlflowClient

    from batch_serving.models.registry import check_registry_reachable

    check_registry_reachable(target.registry_uri or target.tracking_uri)
    return MlflowClient(tracking_uri=target.tracking_uri, registry_uri=target.registry_uri)


def _version_of(client: Any, target: Target, alias: str) -> int:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(target.name, alias).version)
    except MlflowException:
        raise RegistryError(
            f"alias {alias!r} not found for model {target.name!r} in registry "
            f"{target.registry_uri or target.tracking_uri}"
        ) from None


def _scores(
    target: Target, version: int, evaluation: pd.DataFrame, features: tuple[str, ...]
) -> np.ndarray:
    """The version's scores of the rows, through the normal scoring path."""
    from batch_serving.errors import ScoringError
    from batch_serving.notebook import score_frame

    scored = score_frame(
        evaluation[list(features)].reset_index(drop=True),
        f"models:/{target.name}/{version}",
        tracking_uri=target.tracking_uri,
        registry_uri=target.registry_uri,
        keep=[],
    )
    assert isinstance(scored, pd.DataFrame)  # a pandas input is scored to a pandas frame
    frame = scored
    failed = int(frame["error_class"].notna().sum())
    if failed:
        raise ScoringError(
            f"{target.name} version {version} could not score {failed} of {len(frame)} "
            f"evaluation rows: {frame['error_message'].dropna().iloc[0]}"
        )
    return frame["score"].to_numpy(dtype=np.float64)


def _refusal(target: Target, champion: int, challenger: int, report: GateReport) -> str:
    failed = "; ".join(g.describe() for g in report.failed)
    return (
        f"promotion of {target.name} version {challenger} over @{target.champion_alias} "
        f"(version {champion}) refused on {report.rows} labelled rows: {failed}"
    )


def _record_promotion(
    client: Any,
    target: Target,
    champion: int,
    challenger: int,
    report: GateReport,
    actor: str,
    data_range: tuple[str, str],
) -> str:
    metrics = {f"champion_{k}": v for k, v in report.champion_metrics.items()}
    metrics |= {f"challenger_{k}": v for k, v in report.challenger_metrics.items()}
    metrics |= {f"gate_{g.name}_passed": float(g.passed) for g in report.gates}
    tags = {
        "action": "promote",
        "model": target.name,
        "actor": actor,
        "outcome": "promoted" if report.passed else "refused",
        "failed_gates": ",".join(g.name for g in report.failed) or "none",
    }
    params = {
        "champion_version": str(champion),
        "challenger_version": str(challenger),
        "data_from": data_range[0],
        "data_to": data_range[1],
        "rows": str(report.rows),
        **{f"threshold_{g.name}": f"{g.threshold:g}" for g in report.gates},
    }
    return _record(client, f"promote-{target.name}", tags, params, metrics)


def _record(
    client: Any, run_name: str, tags: dict[str, str], params: dict[str, str], metrics: dict
) -> str:
    """One finished MLflow run in the promotions experiment: the evidence of an alias move."""
    from mlflow.entities import Metric, Param, RunTag

    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run = client.create_run(experiment_id, run_name=run_name)
    stamp = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items() if np.isfinite(v)],
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(TAG_PREFIX + k, v) for k, v in tags.items()],
    )
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def _move_champion(
    client: Any,
    target: Target,
    champion: int,
    challenger: int,
    actor: str,
    run_id: str,
    data_range: tuple[str, str],
) -> None:
    """The alias move, then the tags that say who moved it, why, and where from."""
    client.set_registered_model_alias(target.name, target.champion_alias, str(challenger))
    client.set_registered_model_tag(target.name, PREVIOUS, str(champion))
    client.set_registered_model_tag(target.name, TAG_PREFIX + "last_change_run", run_id)
    tags = {
        "promoted_at": _now(),
        "promoted_by": actor,
        "promotion_run": run_id,
        "replaced_version": str(champion),
        "promotion_data": f"{data_range[0]}..{data_range[1]}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(target.name, str(challenger), TAG_PREFIX + key, value)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
