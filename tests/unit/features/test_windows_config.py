"""The ``windows:`` section: checked at load, a mistake is exit 2 naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from windows_oracle import WINDOWS

from batch_serving.cli import main
from batch_serving.config import load_config
from batch_serving.errors import ConfigError
from batch_serving.features.spec import WindowSpec

COLUMNS = "card_id STRING, ts TIMESTAMP, amount DOUBLE, merchant STRING"


def job(tmp_path: Path, windows: dict[str, Any], **stream: Any) -> Path:
    data = {
        "job": "fraud",
        "model": {"name": "fraud", "alias": "champion", "tracking_uri": "sqlite:///x.db"},
        "input": {"path": str(tmp_path / "in")},
        "entity_columns": ["card_id"],
        "output": {"root": str(tmp_path / "out")},
        "stream": {
            "path": str(tmp_path / "landing"),
            "format": "json",
            "columns": COLUMNS,
            "event_time_column": "ts",
            **stream,
        },
        "windows": windows,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def changed(path: str, value: Any) -> dict[str, Any]:
    """WINDOWS with one key (dotted, list items by index) set to ``value``."""
    data = copy.deepcopy(WINDOWS)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return data


def test_valid_section_gives_the_features_in_declaration_order(tmp_path: Path) -> None:
    cfg = load_config(job(tmp_path, WINDOWS))
    assert cfg.windows is not None
    spec = WindowSpec.from_config(cfg.windows)
    assert spec.names[:3] == ("amount_count_10m", "amount_count_1h", "amount_sum_10m")
    assert spec.names[-1] == "merchant_distinct_count_30m"
    assert len(spec.names) == 12
    assert (spec.watermark_us, spec.longest_us) == (300_000_000, 3_600_000_000)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "aggregates.0.windows.1",
            "1 hour",
            r"windows\.aggregates\.0\.windows\.1: .*'1 hour' is not a duration",
        ),
        (
            "aggregates.0.windows.0",
            "0m",
            r"windows\.aggregates\.0\.windows\.0: .*'0m' must be longer than zero",
        ),
        ("watermark", "soon", r"windows\.watermark: .*'soon' is not a duration"),
        ("ttl", "30m", r"windows\.ttl 30m is shorter than the longest window \(1h\)"),
        ("aggregates.0.column", "amout", r"windows\.aggregates\.0\.column: unknown column 'amout'"),
        (
            "aggregates.1.functions",
            ["sum"],
            r"windows\.aggregates\.1\.column: \['sum'\] need a numeric column; merchant is STRING",
        ),
        (
            "aggregates.0.functions.0",
            "median",
            r"windows\.aggregates\.0\.functions\.0: Input should be 'count'",
        ),
        ("entity", "card", r"windows\.entity: unknown column 'card'"),
        ("event_time", "amount", r"windows\.event_time: column amount is DOUBLE, not TIMESTAMP"),
    ],
)
def test_a_bad_key_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any, message: str
) -> None:
    path = job(tmp_path, changed(key, value))
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    assert main(["runs", "--config", str(path)]) == 2
    assert "windows." in capsys.readouterr().err


def test_duplicate_feature_names_are_refused(tmp_path: Path) -> None:
    twice = changed("aggregates.1", {"column": "amount", "functions": ["sum"], "windows": ["10m"]})
    with pytest.raises(ConfigError, match=r"name a feature twice: \['amount_sum_10m'\]"):
        load_config(job(tmp_path, twice))


def test_the_stream_must_use_the_windows_event_time(tmp_path: Path) -> None:
    path = job(tmp_path, WINDOWS, event_time_column=None)
    with pytest.raises(
        ConfigError, match=r"windows\.event_time ts needs stream\.event_time_column"
    ):
        load_config(path)


def test_unknown_key_in_the_section_names_the_closest(tmp_path: Path) -> None:
    data = copy.deepcopy(WINDOWS)
    data["watermrk"] = data.pop("watermark")
    with pytest.raises(
        ConfigError, match=r"windows\.watermrk: .*did you mean 'windows\.watermark'"
    ):
        load_config(job(tmp_path, data))
