"""The ``labels_stream:`` section of ``learning.yaml``: paths resolve like the rest of the
file, a bad column list or a missing section is a ConfigError before any Spark starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from batch_serving.errors import ConfigError
from batch_serving.learning.labels_stream import stream_settings
from batch_serving.learning.settings import load_learning_config

DDL = "customer_id BIGINT, label INT, event_time TIMESTAMP"


def write(tmp_path: Path, **extra: Any) -> Path:
    (tmp_path / "conf" / "learning").mkdir(parents=True)
    data = {"labels": {"path": "labels"}, "learner": {"features": ["a"]}, **extra}
    path = tmp_path / "conf" / "learning" / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_stream_paths_resolve_against_the_project_root(tmp_path: Path) -> None:
    path = write(tmp_path, labels_stream={"path": "landing/labels", "columns": DDL})
    stream = stream_settings(load_learning_config(path))
    assert stream.path == str(tmp_path / "landing" / "labels")
    assert stream.checkpoint == str(tmp_path / "checkpoints" / "labels-stream")
    assert (stream.format, stream.max_files_per_trigger) == ("json", 1)


def test_no_section_and_a_bad_column_are_config_errors_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no `labels_stream:` section"):
        stream_settings(load_learning_config(write(tmp_path)))
    bad = write(tmp_path / "b", labels_stream={"path": "x", "columns": "customer_id BIGINT, label"})
    with pytest.raises(ConfigError, match="'label'"):
        stream_settings(load_learning_config(bad))
    wrong = write(tmp_path / "c", labels_stream={"path": "x", "columns": DDL, "format": "csv"})
    with pytest.raises(ConfigError, match=r"labels_stream\.format"):
        load_learning_config(wrong)
