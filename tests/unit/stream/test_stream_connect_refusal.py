"""``stream`` with ``spark.remote``: refused (exit 2) naming the command and Spark Connect,
before any session starts (no server is running here: a connection attempt would fail
otherwise, with another code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from batch_serving.cli import main
from batch_serving.config import load_config
from batch_serving.errors import ConfigError
from batch_serving.spark.connect import free_port
from batch_serving.stream.runner import stream_config


def job(tmp_path: Path, **spark: Any) -> Path:
    data = {
        "job": "events",
        "model": {"name": "churn", "alias": "champion", "tracking_uri": "sqlite:///x.db"},
        "input": {"path": str(tmp_path / "in")},
        "entity_columns": ["customer_id"],
        "output": {"root": str(tmp_path / "out")},
        "stream": {"path": str(tmp_path / "landing"), "columns": "customer_id BIGINT, x DOUBLE"},
        "spark": spark,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_stream_command_refuses_a_connect_job_with_exit_2(tmp_path: Path, capsys) -> None:
    path = job(tmp_path, remote=f"sc://127.0.0.1:{free_port()}")  # nothing listens there

    code = main(["stream", "--config", str(path), "--available-now"])

    err = capsys.readouterr().err
    assert code == 2
    assert "job events: `stream` is not available under Spark Connect (spark.remote)" in err
    assert "run the stream with a classic session" in err
    assert "Traceback" not in err and "grpc" not in err.lower()
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_a_classic_stream_job_passes_the_check(tmp_path: Path) -> None:
    cfg = load_config(job(tmp_path, master="local[1]"))
    assert stream_config(cfg).columns == "customer_id BIGINT, x DOUBLE"
    remote = cfg.model_copy(
        update={"spark": cfg.spark.model_copy(update={"remote": "sc://127.0.0.1:15002"})}
    )
    with pytest.raises(ConfigError, match="`stream` is not available under Spark Connect"):
        stream_config(remote)
