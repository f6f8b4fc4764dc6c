"""A client of the lookup API's ``POST /v1/models/{m}:score``: feature rows in, served values
out, in batches (the endpoint takes at most ``max_batch`` rows per request), each with a
timeout. A failure names the endpoint; ``ScoreFailure`` tells a caller which rows are
unanswered and whether the API was unreachable (worth a partial answer) or refused the rows
(a bug in the request: never hidden).

The embedded cascade (``batch_serving.embedded``) sends its undecided rows through it; the
HTTP client is created on first use, never at import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from batch_serving.errors import RemoteScoringError

DEFAULT_BATCH = 256


@dataclass
class ScoreFailure:
    """Why rows ``start:`` of a call were not answered; ``reachable``: the API answered (a 4xx),
    so the rows themselves are wrong and a partial answer would hide a bug."""

    start: int
    message: str
    reachable: bool


@dataclass
class Scored:
    """The values the API answered (one dict per answered row, in order) and, if a request
    failed, why the rest were not answered."""

    values: list[dict[str, Any]]
    failure: ScoreFailure | None = None


@dataclass
class ScoreClient:
    """``POST {url}/v1/models/{model}:score`` in batches of ``batch_size`` rows."""

    url: str
    model: str
    batch_size: int = DEFAULT_BATCH
    timeout_s: float = 5.0
    client: httpx.Client | None = None
    requests: int = field(default=0, init=False)
    rows_sent: int = field(default=0, init=False)
    _owned: bool = field(default=False, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"{self.url.rstrip('/')}/v1/models/{self.model}:score"

    def score(self, rows: Sequence[Mapping[str, Any]]) -> Scored:
        """Values of each row, batch by batch; stops at the first failed request."""
        values: list[dict[str, Any]] = []
        for start in range(0, len(rows), max(self.batch_size, 1)):
            chunk = rows[start : start + self.batch_size]
            answered, failure = self._post(chunk, start)
            if failure is not None:
                return Scored(values, failure)
            values += answered
        return Scored(values)

    def close(self) -> None:
        """Close the HTTP client this object created (a client passed in stays the caller's)."""
        if self.client is not None and self._owned:
            self.client.close()
            self.client = None

    def _post(
        self, rows: Sequence[Mapping[str, Any]], start: int
    ) -> tuple[list[dict[str, Any]], ScoreFailure | None]:
        if self.client is None:
            self.client, self._owned = httpx.Client(timeout=self.timeout_s), True
        body = json.dumps({"rows": list(rows)}, default=_plain)
        self.requests += 1
        self.rows_sent += len(rows)
        where = f"POST {self.endpoint} (rows {start}-{start + len(rows) - 1})"
        try:
            response = self.client.post(
                self.endpoint,
                content=body,
                headers={"content-type": "application/json"},
                timeout=self.timeout_s,
            )
        except httpx.TimeoutException:
            return [], ScoreFailure(start, f"{where}: no answer within {self.timeout_s} s", False)
        except httpx.HTTPError as exc:
            return [], ScoreFailure(start, f"{where}: {type(exc).__name__}: {exc}", False)
        if response.status_code != 200:
            reason = f"{where}: HTTP {response.status_code} {_error_text(response)}"
            return [], ScoreFailure(start, reason, response.status_code < 500)
        results = response.json().get("results", [])
        if len(results) != len(rows):
            reason = f"{where}: answered {len(results)} results for {len(rows)} rows"
            return [], ScoreFailure(start, reason, True)
        return [dict(r["values"]) for r in results], None


def raise_for(failure: ScoreFailure, unanswered: int) -> RemoteScoringError:
    """The error of a failed call, naming the endpoint and how many rows stay unanswered."""
    hint = "" if failure.reachable else "; partial=True returns the rows decided in-process"
    return RemoteScoringError(f"{failure.message}; {unanswered} row(s) unanswered{hint}")


def _error_text(response: httpx.Response) -> str:
    """The API's error message (``{"error": {"message": ...}}``), else the body's start."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _plain(value: Any) -> Any:
    """numpy scalars (from a DataFrame's rows) as the Python values JSON knows."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
