"""Request and response models: the OpenAPI schema that generated clients are built from."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

ID_PATTERN = r"^[A-Za-z0-9_.:@|\-]{1,128}$"
EntityId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Value = float | int | str | bool | dict[str, float | None] | None
# member key -> that member's outputs and lineage; null where the member failed on the row
Members = dict[str, dict[str, Value] | None]
MEMBERS_DOC = (
    "Only when members are asked for: one object per member model of a multi-model job "
    "(its outputs, a shadow's would-be action, model_name, model_version, model_run_id); "
    "empty for a single-model job."
)
MEMBERS_EXAMPLE = {
    "champion": {"score": 0.12, "model_name": "churn", "model_version": 3, "model_run_id": "a1"},
    "challenger": {"score": 0.2, "action": "review", "model_name": "churn", "model_version": 4},
}


class ErrorBody(BaseModel):
    code: str = Field(examples=["entity_not_found"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class LookupQuery(BaseModel):
    """Query parameters of a one-id GET; any other parameter is a 422."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    members: bool = Field(
        default=False,
        description="also answer each member model's outputs under `members` "
        "(multi-model jobs); `values` holds the served columns either way",
    )


FEATURES_AS_OF_DOC = (
    "live answers of a model with windowed features (`live_window_jobs`): the time of the "
    "entity's newest event in the online store, the aggregates computed as of the request "
    "over its stored events; null when it has none (empty windows). Absent otherwise"
)
AGGREGATES_DOC = (
    "live answers of a model with windowed features (`live_window_jobs`): each windowed "
    "feature as scored, computed as of the request from the online store. Absent otherwise"
)


class PredictionResponse(BaseModel):
    model: str = Field(examples=["churn"])
    entity_id: str = Field(examples=["42"])
    model_version: int = Field(examples=[3])
    as_of: dt.date = Field(description="run date of the scoring run that produced the values")
    run_id: str
    snapshot: str
    values: dict[str, Value] = Field(
        description="the served columns: the score (the ensemble's, the answering cascade "
        "stage's followed by `answered_by`, its member key, or the champion's) and the "
        "business-rule action when rules are configured",
        examples=[{"score": 0.137, "action": "allow"}],
    )
    members: Members | None = Field(
        default=None, description=MEMBERS_DOC, examples=[MEMBERS_EXAMPLE]
    )
    source: str = Field(
        default="snapshot",
        description="where the values come from: `snapshot` (the batch), `live` (scored now "
        "from the feature snapshot; models with live scoring enabled) or `cache` (a recent "
        "live answer)",
        examples=["snapshot"],
    )
    live_model: str | None = Field(
        default=None, description="the model version that scored a live or cached answer"
    )
    features_as_of: dt.datetime | None = Field(
        default=None, description=FEATURES_AS_OF_DOC, examples=["2026-12-07T14:03:21.250000+00:00"]
    )
    aggregates: dict[str, float | int | None] | None = Field(
        default=None, description=AGGREGATES_DOC, examples=[{"amount_count_10m": 7}]
    )


class BatchGetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[EntityId | int] = Field(min_length=1, examples=[["42", "43", "999999"]])
    members: StrictBool = Field(
        default=False, description="also answer each member model's outputs under `members`"
    )


class Prediction(BaseModel):
    entity_id: str
    values: dict[str, Value]
    members: Members | None = Field(default=None, description=MEMBERS_DOC)
    source: Literal["snapshot", "live", "cache"] = Field(
        default="snapshot",
        description="`snapshot`: precomputed; `live`/`cache`: scored live (live fallback on)",
    )
    features_as_of: dt.datetime | None = Field(default=None, description=FEATURES_AS_OF_DOC)
    aggregates: dict[str, float | int | None] | None = Field(
        default=None, description=AGGREGATES_DOC
    )


class BatchGetResponse(BaseModel):
    model: str
    model_version: int
    as_of: dt.date
    run_id: str
    snapshot: str
    results: list[Prediction]
    missing: list[str] = Field(description="requested ids that are not in the snapshot")


class ModelInfo(BaseModel):
    model: str
    model_version: int
    as_of: dt.date
    run_id: str
    snapshot: str
    rows: int
    published_at: str
    backend: str
    members: list[str] = Field(
        default_factory=list, description="member keys answered with members=true"
    )


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])


class ScoreRequest(BaseModel):
    """Feature rows to score live: at most ``max_batch`` (default 1000), each an object with
    exactly the model's features."""

    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, Any]] = Field(
        min_length=1,
        examples=[[{"tenure_months": 3, "monthly_charges": 70.5, "contract": "month-to-month"}]],
    )


class ScoredRow(BaseModel):
    values: dict[str, Value]
    members: Members | None = Field(
        default=None, description="multi-model jobs: each member's outputs and lineage"
    )


class ScoreResponse(BaseModel):
    model: str
    model_version: int
    live_model: str
    source: str = Field(examples=["live"])
    results: list[ScoredRow]
