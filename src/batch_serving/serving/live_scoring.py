"""Live scoring of named feature rows (the lookup API's live fallback): the rows go through the
scoring core (``BatchScorer``) with a plan like the job's (its rules and score column), so a
live answer is the batch's answer for the same features.

A multi-model job (members, pipelines, shadows, an ensemble, rules) is planned with ALL its
members by ``build_plan``, each loaded at the version the published snapshot was scored with
(pinned in the feature manifest by ``serving/features.py``; aliases are never re-resolved), so
a moved alias cannot make a live answer differ from the batch's. A cascade job is planned with
its stages (recorded in the feature manifest), so a live answer is the answering stage's
outputs and ``answered_by``, like the batch's row."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from batch_serving.serving.records import FeatureManifest, PinnedMember

if TYPE_CHECKING:
    from batch_serving.scoring.cascade import Cascade

log = logging.getLogger(__name__)

ROW = "__row"
_ARROW = {
    "long": pa.int64(),
    "integer": pa.int32(),
    "double": pa.float64(),
    "float": pa.float32(),
    "string": pa.string(),
    "boolean": pa.bool_(),
}


class RowError(ValueError):
    """A request row does not fit the model's inputs; the message starts with the field."""


@dataclass
class LiveScorer:
    """The loaded model versions (one per plan member) and their plan over named feature rows.

    ``features`` are the input columns a request row must carry (every member's, for a
    multi-model plan); a scored row holds the served columns, then one struct per member."""

    uri: str
    version: int
    features: tuple[str, ...]
    plan: Any
    models: tuple[Any, ...]
    schema: pa.Schema
    _batch_scorer: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def score(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any] | str]:
        """Values per row, or the reason a row could not be scored."""
        from batch_serving.scoring.batch import BatchScorer

        columns = {ROW: pa.array(range(len(rows)), pa.int64())}
        for name in self.features:
            field = self.schema.field(name)
            columns[name] = pa.array([r.get(name) for r in rows], field.type)
        batch = pa.RecordBatch.from_pydict(columns)
        with self._lock:  # one BatchScorer: its run-constant columns are built once
            if self._batch_scorer is None:
                self._batch_scorer = BatchScorer(self.plan, list(self.models))
            scored = self._batch_scorer.score(batch)
        out: list[dict[str, Any] | str] = ["not scored"] * len(rows)
        predictions = scored.predictions
        index = predictions.column(ROW).to_pylist()
        columns_out = [*self.plan.output_columns, *self.member_columns]
        values = {c: predictions.column(c).to_pylist() for c in columns_out}
        for position, row in enumerate(index):
            out[row] = {c: v[position] for c, v in values.items()}
        if scored.quarantined is not None:
            q = scored.quarantined
            for row, message in zip(
                q.column(ROW).to_pylist(), q.column("error_message").to_pylist(), strict=True
            ):
                out[row] = str(message)
        return out

    @property
    def member_columns(self) -> list[str]:
        """Member struct columns of a scored row (none for a single-model plan)."""
        return list(self.plan.member_columns)


def load_scorer(uri: str, info: FeatureManifest, tracking_uri: str) -> LiveScorer:
    """Resolve and load ``uri``; plan its scoring like the job did (rules, score column).
    A feature manifest listing ``members`` is planned with all of them (``load_members``)."""
    if info.members:
        return load_members(uri, info, tracking_uri)
    from batch_serving.models.adapters import OutputRequest
    from batch_serving.models.loading import load_and_describe
    from batch_serving.models.registry import resolve_model
    from batch_serving.models.uris import model_config
    from batch_serving.scoring.plan import Member, ScoringSettings, build_plan
    from batch_serving.scoring.rules import parse_rules

    cfg = model_config(
        uri,
        tracking_uri,
        registry_uri=info.registry_uri if uri == info.model_uri else None,
        positive_label=info.positive_label,
    )
    ref = resolve_model(cfg)
    request = OutputRequest(positive_label=cfg.positive_label, score_column=info.score_column)
    with tempfile.TemporaryDirectory(prefix="bs-live-") as tmp:
        spec, loaded, _ = load_and_describe(cfg, request, ref, tmp)
    types = dict(spec.input_types)
    fields = [pa.field(ROW, pa.int64())]
    fields += [pa.field(f, _ARROW.get(types.get(f, "double"), pa.float64())) for f in spec.features]
    schema = pa.schema(fields)
    rules = parse_rules(info.rules) if info.rules else None
    plan = build_plan(
        [Member("champion", ref, spec)],
        [ROW],
        schema,
        run_id="live",
        scored_at=dt.datetime.now(dt.UTC),
        where=f"live rows for {uri}",
        settings=ScoringSettings(
            multi=rules is not None, rules=rules, score_column=request.score_column
        ),
    )
    _one_thread()
    log.info("live fallback: loaded %s (%s runtime)", ref.uri, spec.runtime)
    return LiveScorer(ref.uri, ref.version, spec.features, plan, (loaded.obj,), schema)


def load_members(uri: str, info: FeatureManifest, tracking_uri: str) -> LiveScorer:
    """Load every member of a multi-model job at its pinned version and plan them like the
    batch did (``build_plan``: roles, pipeline inputs, ensemble, cascade, rules, score column).

    ``uri`` other than the champion's pinned ``model_uri`` (e.g. its ONNX export) stands in
    for the champion only; every other member stays pinned."""
    from batch_serving.config.members import EnsembleConfig
    from batch_serving.models.registry import resolve_model
    from batch_serving.models.uris import model_config
    from batch_serving.scoring.ensemble import from_config
    from batch_serving.scoring.plan import Member, ScoringSettings, build_plan
    from batch_serving.scoring.rules import parse_rules

    score_column = info.score_column
    members, models = [], []
    types: dict[str, str] = {}
    for pinned in info.members:
        cfg = _pinned_config(pinned, tracking_uri)
        if pinned.role == "champion" and uri != info.model_uri:
            cfg = model_config(
                uri,
                tracking_uri,
                positive_label=cfg.positive_label,
                skops_trusted_types=cfg.skops_trusted_types,
            )
        ref = resolve_model(cfg)
        spec, obj = _load(cfg, ref, pinned, info, score_column)
        inputs = tuple(pinned.inputs) if pinned.inputs is not None else None
        member = Member(pinned.key, ref, spec, pinned.role, inputs)
        spec_types = dict(spec.input_types)
        for feature, source in member.sources_by_feature():
            if "." not in source:
                types.setdefault(source, spec_types.get(feature, "double"))
        members.append(member)
        models.append(obj)
    fields = [pa.field(ROW, pa.int64())]
    fields += [pa.field(c, _ARROW.get(t, pa.float64())) for c, t in types.items()]
    schema = pa.schema(fields)
    ensemble = info.ensemble_config
    plan = build_plan(
        members,
        [ROW],
        schema,
        run_id="live",
        scored_at=dt.datetime.now(dt.UTC),
        where=f"live rows for {info.model}",
        settings=ScoringSettings(
            multi=True,
            ensemble=from_config(EnsembleConfig(**ensemble)) if ensemble else None,
            rules=parse_rules(info.rules) if info.rules else None,
            score_column=score_column,
            cascade=_cascade(info),
        ),
    )
    _one_thread()
    champion = plan.served.ref
    log.info("live fallback: loaded %s (%d members)", champion.uri, len(members))
    return LiveScorer(champion.uri, champion.version, tuple(types), plan, tuple(models), schema)


def _cascade(info: FeatureManifest) -> Cascade | None:
    """The job's cascade checked again against the pinned members (as ``scoring.cascade.
    from_config`` checks it against the job file); None when the manifest records none."""
    if info.cascade is None:
        return None
    from batch_serving.config.cascade import check_cascade
    from batch_serving.scoring.cascade import Cascade

    roles = {p.key: p.role for p in info.members}
    inputs = {p.key: tuple(p.inputs) if p.inputs is not None else None for p in info.members}
    stages = check_cascade(
        info.cascade,
        roles,
        inputs,
        ensemble=info.ensemble_config is not None,
        score_column=info.score_column,
    )
    return Cascade(stages)


def _pinned_config(pinned: PinnedMember, tracking_uri: str) -> Any:
    """A member's registry version as the feature manifest pinned it (never its alias)."""
    from batch_serving.config import ModelConfig

    return ModelConfig(
        name=pinned.name,
        version=pinned.version,
        tracking_uri=tracking_uri,
        registry_uri=pinned.registry_uri,
        positive_label=pinned.positive_label,
        skops_trusted_types=tuple(pinned.skops_trusted_types),
    )


def _load(
    cfg: Any, ref: Any, pinned: PinnedMember, info: FeatureManifest, score_column: str
) -> tuple[Any, Any]:
    """(spec, model object) of one member, described with the job's output request."""
    from batch_serving.models.adapters import OutputRequest
    from batch_serving.models.loading import load_and_describe

    configured = info.champion_features if pinned.role == "champion" else None
    request = OutputRequest(
        features=tuple(configured) if configured else None,
        positive_label=cfg.positive_label,
        score_column=score_column,
    )
    with tempfile.TemporaryDirectory(prefix="bs-live-") as tmp:
        spec, loaded, _ = load_and_describe(cfg, request, ref, tmp)
    if pinned.inputs is not None and len(pinned.inputs) != len(spec.features):
        from batch_serving.errors import ConfigError

        raise ConfigError(
            f"members.{pinned.key}.inputs lists {len(pinned.inputs)} sources but "
            f"{ref.uri} has {len(spec.features)} features {list(spec.features)}"
        )
    return spec, loaded.obj


def validate_rows(rows: list[dict[str, Any]], scorer: LiveScorer) -> None:
    """Every feature present, numbers for numeric features and strings for text ones (other
    keys, such as the entity id, are ignored)."""
    for i, row in enumerate(rows):
        for name in scorer.features:
            if name not in row:
                raise RowError(f"rows[{i}].{name}: missing feature")
            value, kind = row[name], scorer.schema.field(name).type
            if value is None:
                continue
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if pa.types.is_string(kind) and not isinstance(value, str):
                raise RowError(f"rows[{i}].{name}: expected a string")
            if (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and not numeric:
                raise RowError(f"rows[{i}].{name}: expected a number")
            if pa.types.is_integer(kind) and isinstance(value, float) and not value.is_integer():
                raise RowError(f"rows[{i}].{name}: expected an integer")


def _one_thread() -> None:
    """The API process scores one or a few rows per request: OpenMP/BLAS thread pools only add
    wake-up latency there (an sklearn HGB single-row predict took 0.5-2 s on a loaded 2-core
    machine with its default pool, ~2 ms with one thread). Process-wide, set once."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
