"""Delta tables on S3 (moto on loopback): the log on the bucket is the commit, each entry a
conditional PUT, so concurrent writers of one table never overwrite each other's version
(kills mid-commit: test_delta_kill.py; whole runs of both engines: test_s3_engines.py)."""

from __future__ import annotations

import uuid
from typing import Any

from test_delta_protocol import commit_concurrently

from batch_serving.config import StorageConfig
from batch_serving.storage import location
from batch_serving.tables.layout import predictions_layout


def test_runs_of_different_dates_commit_to_one_s3_table_at_once_and_none_is_lost(s3: Any) -> None:
    storage = StorageConfig.model_validate(s3.storage)
    bucket = f"bs-{uuid.uuid4().hex[:12]}"
    location(f"s3://{bucket}", storage).mkdir()
    layout = predictions_layout(f"s3://{bucket}/out", "m", storage, "delta")
    commit_concurrently(layout, dates=3, attempts=2)
