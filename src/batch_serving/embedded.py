"""Embedded scoring: the model inside the caller's process, no Spark, no server.

    from batch_serving.embedded import load
    model = load("models:/churn_onnx@champion", tracking_uri="sqlite:///mlruns/mlflow.db")
    model.predict({"tenure_months": 3, "contract": "month-to-month", ...})   # -> array([0.71])

``load`` takes a registry URI, an MLflow model directory (any runtime we have an adapter for)
or a bare ``.onnx`` file. ``predict(rows)`` takes one dict, a list of dicts, a pandas
DataFrame or an Arrow table/batch and returns a float64 numpy array: the positive class's
probability for a binary classifier (found by label, as in the batch job), the value for a
regressor, one row of class probabilities per input row for a multi-class model. For an ONNX
model, dicts go straight into onnxruntime tensors (no pandas, no Arrow): a single-row call
costs tens of microseconds, where an sklearn pipeline costs milliseconds.

A cascade (issue #28) answers the easy rows in-process and only the rest remotely:

    small = load("models:/churn_small_onnx@champion", tracking_uri=...)
    chain = EmbeddedCascade(
        [LocalStage("small", small, "score <= 0.2 or score >= 0.8")],
        RemoteStage("http://lookup:8000", "churn"),   # POST /v1/models/churn:score
    )
    answers = chain.predict(rows)          # one Answer per row: score, answered_by, values

Rows no local stage is sure of go to the lookup API's ``:score`` endpoint in batches (decided
rows never leave the process). When the API is down the call raises ``RemoteScoringError``
naming the endpoint; ``partial=True`` returns the decided rows and marks the others undecided.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from batch_serving.config.cascade import Stage, StageConfig, checked_stage
from batch_serving.errors import ConfigError, InputValidationError
from batch_serving.models.adapters import LoadedModel, ModelSpec, OutputRequest, describe, predict
from batch_serving.models.adapters.onnx import OnnxModel

__all__ = [
    "Answer",
    "EmbeddedCascade",
    "EmbeddedModel",
    "LocalStage",
    "RemoteStage",
    "load",
]


@dataclass
class EmbeddedModel:
    """A loaded model and its spec; ``predict`` is safe to call from several threads."""

    spec: ModelSpec
    model: Any
    label: str

    @property
    def features(self) -> tuple[str, ...]:
        return self.spec.features

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    def predict(self, rows: Any) -> np.ndarray:
        """Scores for ``rows`` (see the module docstring for the accepted shapes)."""
        if isinstance(self.model, OnnxModel):
            if isinstance(rows, Mapping):
                return self._from_onnx(self._run_row(rows, None))
            return self._from_onnx(self.model.run(_columns(rows, self.spec.features)))
        outputs = predict(self.spec, self.model, _batch(rows, self.spec.features))
        return _values(self.spec, outputs)

    def score_row(self, row: Mapping[str, Any]) -> float:
        """One row's number (binary score or prediction; ``predict(row)[0]``): for an ONNX
        model only the output that holds it is fetched, without building columns."""
        if not isinstance(self.model, OnnxModel) or self.spec.kind == "multiclass":
            return float(self.predict(row)[0])
        names = self.model.output_names
        if self.spec.kind == "regression":
            return float(np.asarray(self._run_row(row, names[:1])[0]).reshape(-1)[0])
        return float(self._run_row(row, names[-1:])[0][0, self.spec.positive_index])

    def _run_row(self, row: Mapping[str, Any], outputs: list[str] | None) -> list[Any]:
        """The ONNX session on one dict; a missing feature is named as for a list of rows."""
        try:
            return self.model.run_row(row, outputs)
        except KeyError:
            _columns(row, self.spec.features)  # raises InputValidationError naming it
            raise

    def _from_onnx(self, out: list[Any]) -> np.ndarray:
        if self.spec.kind == "regression":
            return np.asarray(out[0], dtype=np.float64).reshape(-1)
        proba = np.asarray(out[-1], dtype=np.float64)
        if self.spec.kind == "binary":
            return proba[:, self.spec.positive_index]
        return proba


def load(
    model_uri_or_path: str | Path,
    *,
    tracking_uri: str | None = None,
    positive_label: str | int | bool | None = None,
) -> EmbeddedModel:
    """Load once, at application start; ``tracking_uri`` for ``models:/`` URIs."""
    text = str(model_uri_or_path)
    request = OutputRequest(positive_label=positive_label)
    if text.startswith("models:/"):
        loaded = _from_registry(text, tracking_uri)
    else:
        path = Path(text)
        if path.is_file() and path.suffix == ".onnx":
            loaded = LoadedModel("onnx", OnnxModel(path.read_bytes()), None)
        else:
            from batch_serving.models.artifacts import load_model_dir

            loaded = load_model_dir(path, text)
    return EmbeddedModel(describe(loaded, request, text), loaded.obj, text)


def _from_registry(uri: str, tracking_uri: str | None) -> LoadedModel:
    import mlflow.artifacts

    from batch_serving.models.artifacts import load_model_dir

    with tempfile.TemporaryDirectory(prefix="bs-embedded-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri
        )
        return load_model_dir(Path(local), uri)


def _columns(rows: Any, features: Sequence[str]) -> dict[str, Any]:
    """Feature name -> column (list, numpy or Arrow), without building a frame."""
    if isinstance(rows, Mapping):
        return {f: [_field(rows, f, 0)] for f in features}
    if isinstance(rows, pa.Table | pa.RecordBatch):
        _check(rows.schema.names, features)
        return {f: rows.column(f) for f in features}
    if hasattr(rows, "columns") and hasattr(rows, "to_numpy"):  # pandas
        _check(list(rows.columns), features)
        return {f: rows[f].to_numpy() for f in features}
    if isinstance(rows, Sequence) and all(isinstance(r, Mapping) for r in rows):
        return {f: [_field(r, f, i) for i, r in enumerate(rows)] for f in features}
    raise TypeError(f"rows must be a dict, a list of dicts, a DataFrame or Arrow; got {type(rows)}")


def _batch(rows: Any, features: Sequence[str]) -> pa.RecordBatch:
    columns = _columns(rows, features)
    table = pa.table({f: _arrow(v) for f, v in columns.items()})
    return table.combine_chunks().to_batches(max_chunksize=max(len(table), 1))[0]


def _arrow(values: Any) -> pa.Array | pa.ChunkedArray:
    return values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)


def _field(row: Mapping[str, Any], name: str, index: int) -> Any:
    try:
        return row[name]
    except KeyError:
        raise InputValidationError(
            f"row {index} has no feature {name!r}; present: {sorted(row)}"
        ) from None


def _check(present: Sequence[str], features: Sequence[str]) -> None:
    missing = [f for f in features if f not in present]
    if missing:
        raise InputValidationError(f"missing features {missing}; present: {list(present)}")


def _values(spec: ModelSpec, outputs: list[pa.Array]) -> np.ndarray:
    if spec.kind == "multiclass":
        n, k = len(outputs[0]), len(spec.classes)
        flat = outputs[0].values.to_numpy(zero_copy_only=False)
        return np.asarray(flat, dtype=np.float64).reshape(n, k)
    return np.asarray(outputs[0].to_numpy(zero_copy_only=False), dtype=np.float64)


# --- cascades: local stages first, the lookup API for the rows they leave open ------------


@dataclass(frozen=True)
class LocalStage:
    """An in-process stage: its name (``answered_by``), its model and when its answer is
    final (rules grammar on its own output: ``score`` for a binary model, ``prediction`` for
    a regressor)."""

    name: str
    model: EmbeddedModel
    answer_if: str


@dataclass
class RemoteStage:
    """The last stage: the lookup API's ``POST /v1/models/{model}:score``; its answer is the
    served value ``output`` (``score`` by default). ``name`` (``answered_by``) defaults to the
    model's name."""

    url: str
    model: str
    batch_size: int = 256
    timeout_s: float = 5.0
    output: str = "score"
    fields: tuple[str, ...] | None = None
    """The row fields sent (the remote model's features); None: every field of the row."""
    name: str = ""


@dataclass(frozen=True)
class Answer:
    """One row's answer: the score and which stage gave it (both None when undecided: the
    API could not be reached and ``partial=True`` was asked), and the answering stage's
    values (the API's served columns, e.g. its rules' ``action``)."""

    score: float | None
    answered_by: str | None
    values: Mapping[str, Any]

    @property
    def decided(self) -> bool:
        return self.answered_by is not None


class EmbeddedCascade:
    """Local stages in order, then the remote stage for what they leave open.

    ``requests`` and ``rows_sent`` count what went over HTTP (decided rows never do)."""

    def __init__(
        self, stages: Sequence[LocalStage], remote: RemoteStage, client: Any = None
    ) -> None:
        from batch_serving.scoring.cascade import Cascade
        from batch_serving.serving.score_client import ScoreClient

        if not stages:
            raise ConfigError("cascade: give at least one local stage before the remote one")
        self.stages = list(stages)
        self.remote = remote
        self.remote_name = remote.name or remote.model
        self._cascade = Cascade(_local_stages(self.stages, self.remote_name))
        self._names = [_output_name(s.model, f"stages[{i}]") for i, s in enumerate(self.stages)]
        self._client = ScoreClient(
            remote.url, remote.model, remote.batch_size, remote.timeout_s, client
        )

    @property
    def endpoint(self) -> str:
        return self._client.endpoint

    @property
    def requests(self) -> int:
        return self._client.requests

    @property
    def rows_sent(self) -> int:
        return self._client.rows_sent

    def predict(self, rows: Any, *, partial: bool = False) -> list[Answer]:
        """One ``Answer`` per row, in order (rows: a dict, a list of dicts or a DataFrame)."""
        if isinstance(rows, Mapping):
            return [self._predict_row(rows, partial)]
        records = _records(rows)
        answers: list[Answer | None] = [None] * len(records)
        open_rows = np.arange(len(records))
        for index, stage in enumerate(self.stages):
            if not len(open_rows):
                break
            scores = stage.model.predict([records[i] for i in open_rows])
            name = self._names[index]
            decided = self._cascade.answers_numbers(index, scores)
            for i, score in zip(open_rows[decided], scores[decided], strict=True):
                answers[i] = Answer(float(score), stage.name, {name: float(score)})
            open_rows = open_rows[~decided]
        if len(open_rows):
            self._remote(records, open_rows, answers, partial)
        return [a if a is not None else Answer(None, None, {}) for a in answers]

    def _predict_row(self, row: Mapping[str, Any], partial: bool) -> Answer:
        """``predict`` of one dict, the latency-bound call: each local stage scores the row
        (``score_row``: no columns, no Arrow) and decides in plain Python (``answers_number``);
        the answers equal ``predict([row])``'s."""
        for index, stage in enumerate(self.stages):
            score = stage.model.score_row(row)
            if self._cascade.answers_number(index, score):
                return Answer(score, stage.name, {self._names[index]: score})
        answers: list[Answer | None] = [None]
        self._remote([row], np.zeros(1, dtype=np.int64), answers, partial)
        return answers[0] or Answer(None, None, {})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EmbeddedCascade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remote(
        self,
        records: list[Mapping[str, Any]],
        open_rows: np.ndarray,
        answers: list[Answer | None],
        partial: bool,
    ) -> None:
        from batch_serving.serving.score_client import raise_for

        fields = self.remote.fields
        sent = [
            {k: records[i][k] for k in fields} if fields is not None else dict(records[i])
            for i in open_rows
        ]
        got = self._client.score(sent)
        for i, values in zip(open_rows, got.values, strict=False):
            score = values.get(self.remote.output)
            answers[i] = Answer(score, self.remote_name, values)
        failure = got.failure
        if failure is not None and (failure.reachable or not partial):
            raise raise_for(failure, len(open_rows) - len(got.values))


def _local_stages(stages: Sequence[LocalStage], remote: str) -> tuple[Stage, ...]:
    """The local stages as checked cascade stages (each condition parsed and checked against
    its model's output, ConfigError naming ``stages[i]``), then the remote stage, last."""
    names = [s.name for s in stages] + [remote]
    out = []
    for i, stage in enumerate(stages):
        where = f"stages[{i}]"
        if names.count(stage.name) > 1:
            raise ConfigError(f"{where}.name: stage name {stage.name!r} is used twice: {names}")
        config = StageConfig(member=stage.name, answer_if=stage.answer_if)
        out.append(checked_stage(config, where, {_output_name(stage.model, where): "number"}))
    return (*out, Stage(remote, (), "", f"stages[{len(stages)}]"))


def _output_name(model: EmbeddedModel, where: str = "stage") -> str:
    """What a stage's condition calls the model's value: ``score`` (binary) or ``prediction``."""
    if model.spec.kind == "multiclass":
        raise ConfigError(
            f"{where}: {model.label} is a multi-class model; a cascade stage answers with one "
            "number per row (a binary score or a prediction)"
        )
    return "score" if model.spec.kind == "binary" else "prediction"


def _records(rows: Any) -> list[Mapping[str, Any]]:
    """Rows as dicts: the local stages take them, and the undecided ones are sent as JSON."""
    if isinstance(rows, Mapping):
        return [rows]
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas
        records: list[Mapping[str, Any]] = rows.to_dict("records")
        return records
    if isinstance(rows, Sequence) and all(isinstance(r, Mapping) for r in rows):
        return list(rows)
    raise TypeError(f"rows must be a dict, a list of dicts or a DataFrame; got {type(rows)}")
