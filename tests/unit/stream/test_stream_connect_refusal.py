"""``stream`` with ``spark.remote``: a file or Kafka source into the table sink passes the
check; a stream without the table sink, or with windowed features, is refused (exit 2) naming
what Connect cannot run, before any session starts (no server is running here: a connection
attempt would fail otherwise, with another code). The handler's state is picklable (Connect
runs a copy of it)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import yaml

from batch_serving.cli import main
from batch_serving.config import load_config
from batch_serving.errors import ConfigError
from batch_serving.ports import free_port
from batch_serving.stream.metrics import BatchStats, StreamMetrics
from batch_serving.stream.runner import stream_config

KAFKA = {"bootstrap_servers": "127.0.0.1:9", "topics": ["events"], "output_topic": "scored"}
WINDOWS = {
    "entity": "customer_id",
    "event_time": "ts",
    "aggregates": [{"column": "x", "functions": ["sum"], "windows": ["10m"]}],
}


def job(tmp_path: Path, stream: dict[str, Any] | None = None, **extra: Any) -> Path:
    data = {
        "job": "events",
        "model": {"name": "churn", "alias": "champion", "tracking_uri": "sqlite:///x.db"},
        "input": {"path": str(tmp_path / "in")},
        "entity_columns": ["customer_id"],
        "output": {"root": str(tmp_path / "out")},
        "stream": {
            "path": str(tmp_path / "landing"),
            "columns": "customer_id BIGINT, x DOUBLE, ts TIMESTAMP",
            **(stream or {}),
        },
        "spark": {"remote": f"sc://127.0.0.1:{free_port()}"},  # nothing listens there
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_connect_stream_into_the_table_sink_passes_the_check(tmp_path: Path) -> None:
    assert stream_config(load_config(job(tmp_path))).sink == ["table"]


@pytest.mark.parametrize(
    "stream",
    [
        {"source": "kafka", "kafka": KAFKA},
        {"sink": ["table", "kafka"], "kafka": KAFKA},
    ],
)
def test_a_kafka_stream_is_refused_under_connect(tmp_path: Path, stream: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"`stream` with Kafka .* is not available under Spark"):
        stream_config(load_config(job(tmp_path, stream)))


def test_stream_command_refuses_a_connect_kafka_stream_by_name(tmp_path: Path, capsys: Any) -> None:
    path = job(tmp_path, {"sink": "kafka", "kafka": KAFKA})

    code = main(["stream", "--config", str(path), "--available-now"])

    err = capsys.readouterr().err
    assert code == 2
    assert (
        "job events: `stream` with Kafka (stream.source or stream.sink) is not available under "
        "Spark Connect (spark.remote)"
    ) in err
    assert "run a Kafka stream with a classic session" in err
    assert "Traceback" not in err and "grpc" not in err.lower()
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_a_windowed_stream_is_refused_under_connect_only(tmp_path: Path) -> None:
    cfg = load_config(job(tmp_path, {"event_time_column": "ts"}, windows=WINDOWS))
    with pytest.raises(ConfigError, match="`stream` with `windows:` features is not available"):
        stream_config(cfg)
    classic = cfg.model_copy(update={"spark": cfg.spark.model_copy(update={"remote": None})})
    assert stream_config(classic).path == str(tmp_path / "landing")


def test_stream_metrics_survive_a_pickle_round_trip(tmp_path: Path) -> None:
    """Connect pickles the handler with its metrics: the copy keeps counting and writing."""
    metrics = StreamMetrics("churn", tmp_path / "metrics.prom")
    metrics.record_batch(BatchStats(0, 5, 1, 0, 0.1, np.array([1.0, 2.0])))

    copy = pickle.loads(cloudpickle.dumps(metrics))
    copy.record_batch(BatchStats(1, 3, 0, 1, 0.1, np.array([3.0])))

    assert (copy.batches, copy.scored, copy.quarantined, copy.poison_files) == (2, 8, 1, 1)
    assert 'batch_serving_stream_rows_total{model="churn",outcome="scored"} 8' in (
        (tmp_path / "metrics.prom").read_text()
    )
