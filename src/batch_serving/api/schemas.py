"""Request and response models: the OpenAPI schema that generated clients are built from."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ID_PATTERN = r"^[A-Za-z0-9_.:@|\-]{1,128}$"
EntityId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Value = float | int | str | bool | dict[str, float | None] | None


class ErrorBody(BaseModel):
    code: str = Field(examples=["entity_not_found"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class PredictionResponse(BaseModel):
    model: str = Field(examples=["churn"])
    entity_id: str = Field(examples=["42"])
    model_version: int = Field(examples=[3])
    as_of: dt.date = Field(description="run date of the scoring run that produced the values")
    run_id: str
    snapshot: str
    values: dict[str, Value] = Field(examples=[{"score": 0.137}])


class BatchGetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[EntityId | int] = Field(min_length=1, examples=[["42", "43", "999999"]])


class Prediction(BaseModel):
    entity_id: str
    values: dict[str, Value]


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


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])
