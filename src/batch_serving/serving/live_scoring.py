"""Live scoring of named feature rows with one loaded model version (the lookup API's live
fallback): the rows go through the scoring core (``BatchScorer``) with a plan like the job's
(its rules and score column), so a live answer is the batch's answer for the same features."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

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
    """One loaded model version and its scoring plan over named feature rows."""

    uri: str
    version: int
    features: tuple[str, ...]
    plan: Any
    model: Any
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
                self._batch_scorer = BatchScorer(self.plan, [self.model])
            scored = self._batch_scorer.score(batch)
        out: list[dict[str, Any] | str] = ["not scored"] * len(rows)
        predictions = scored.predictions
        index = predictions.column(ROW).to_pylist()
        values = {c: predictions.column(c).to_pylist() for c in self.plan.output_columns}
        for position, row in enumerate(index):
            out[row] = {c: v[position] for c, v in values.items()}
        if scored.quarantined is not None:
            q = scored.quarantined
            for row, message in zip(
                q.column(ROW).to_pylist(), q.column("error_message").to_pylist(), strict=True
            ):
                out[row] = str(message)
        return out


def load_scorer(uri: str, info: dict[str, Any], tracking_uri: str) -> LiveScorer:
    """Resolve and load ``uri``; plan its scoring like the job did (rules, score column)."""
    from batch_serving.models.adapters import OutputRequest
    from batch_serving.models.loading import load_and_describe
    from batch_serving.models.registry import resolve_model
    from batch_serving.models.uris import model_config
    from batch_serving.scoring.plan import Member, build_plan
    from batch_serving.scoring.rules import parse_rules

    cfg = model_config(
        uri,
        tracking_uri,
        registry_uri=info.get("registry_uri") if uri == info.get("model_uri") else None,
        positive_label=info.get("positive_label"),
    )
    ref = resolve_model(cfg)
    request = OutputRequest(
        positive_label=cfg.positive_label, score_column=info.get("score_column", "score")
    )
    with tempfile.TemporaryDirectory(prefix="bs-live-") as tmp:
        spec, loaded, _ = load_and_describe(cfg, request, ref, tmp)
    types = dict(spec.input_types)
    fields = [pa.field(ROW, pa.int64())]
    fields += [pa.field(f, _ARROW.get(types.get(f, "double"), pa.float64())) for f in spec.features]
    schema = pa.schema(fields)
    rules = parse_rules(info["rules"]) if info.get("rules") else None
    plan = build_plan(
        [Member("champion", ref, spec)],
        [ROW],
        schema,
        run_id="live",
        scored_at=dt.datetime.now(dt.UTC),
        where=f"live rows for {uri}",
        multi=rules is not None,
        rules=rules,
        score_column=request.score_column,
    )
    _one_thread()
    log.info("live fallback: loaded %s (%s runtime)", ref.uri, spec.runtime)
    return LiveScorer(ref.uri, ref.version, spec.features, plan, loaded.obj, schema)


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
