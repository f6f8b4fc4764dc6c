"""``input:`` as users have it: a path or a metastore table, a date format, partition filters.

Every bad value is a ConfigError at load (exit 2) that names the key; the partition directory
the job reads is spelt by ``tables.inputs`` from those keys alone.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from batch_serving import cli
from batch_serving.config import load_config
from batch_serving.config.date_format import to_strftime
from batch_serving.config.sections import InputConfig
from batch_serving.errors import ConfigError
from batch_serving.tables.inputs import available_dates, missing_partition, partition_path

DAY = dt.date(2026, 11, 22)


def job_file(tmp_path: Path, inputs: dict[str, Any], **sections: Any) -> Path:
    data = {
        "job": "churn",
        "model": {"name": "churn", "alias": "champion", "tracking_uri": "sqlite:///m.db"},
        "input": inputs,
        "entity_columns": ["customer_id"],
        "output": {"root": str(tmp_path / "out")},
        **sections,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "inputs",
    [{"path": "/w/t", "table": "db.t"}, {"partition_column": "ds"}],
    ids=["both", "neither"],
)
def test_exactly_one_of_path_and_table(tmp_path, inputs) -> None:
    with pytest.raises(ConfigError, match=r"input: .*exactly one of input\.path or input\.table"):
        load_config(job_file(tmp_path, inputs))


def test_a_bad_config_exits_2_naming_the_key(tmp_path, capsys) -> None:
    path = job_file(tmp_path, {"path": "/w/t", "partition_format": "yyyy/MM/dd"})
    code = cli.main(["check-input", "--config", str(path), "--run-date", "2026-11-22"])
    assert code == 2
    assert "input.partition_format" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("yyyy/MM/dd", "only yyyy, MM and dd"),
        ("dd-MM-yy", "only yyyy, MM and dd"),
        ("yyyyMM", "must hold dd exactly once"),
        ("yyyyMMddMM", "must hold MM exactly once"),
        ("%Y%m%d", "only yyyy, MM and dd"),
        ("yyyy-MM-dd HH", "only yyyy, MM and dd"),
    ],
)
def test_partition_format_is_checked_at_load(tmp_path, pattern, problem) -> None:
    with pytest.raises(ConfigError, match=rf"input\.partition_format: .*{problem}"):
        load_config(job_file(tmp_path, {"path": "/w/t", "partition_format": pattern}))


@pytest.mark.parametrize(
    ("pattern", "strftime", "spelt"),
    [
        ("yyyy-MM-dd", "%Y-%m-%d", "2026-11-22"),
        ("yyyyMMdd", "%Y%m%d", "20261122"),
        ("dd.MM.yyyy", "%d.%m.%Y", "22.11.2026"),
        ("yyyy_MM_dd", "%Y_%m_%d", "2026_11_22"),
    ],
)
def test_java_letters_become_strftime(pattern, strftime, spelt) -> None:
    assert to_strftime(pattern) == strftime
    cfg = InputConfig(path="/w/t", partition_column="dt", partition_format=pattern)
    assert partition_path(cfg, DAY) == f"/w/t/dt={spelt}"


def test_table_name_must_be_database_dot_table(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"input\.table: String should match pattern"):
        load_config(job_file(tmp_path, {"table": "features"}, catalog={"enabled": True}))


def test_table_needs_the_catalog_on(tmp_path) -> None:
    path = job_file(tmp_path, {"table": "warehouse.features"}, catalog={"enabled": False})
    with pytest.raises(ConfigError, match=r"input\.table warehouse\.features .*catalog\.enabled"):
        load_config(path)


def test_table_input_loads_and_names_itself_until_resolved(tmp_path) -> None:
    cfg = load_config(job_file(tmp_path, {"table": "warehouse.features"}))
    assert cfg.input.path is None and cfg.input.source == "warehouse.features"
    with pytest.raises(ConfigError, match=r"input\.table warehouse\.features is not resolved"):
        partition_path(cfg.input, DAY)
    resolved = cfg.input.resolved("/lake/features", ("ds",))
    assert partition_path(resolved, DAY) == "/lake/features/ds=2026-11-22"
    assert resolved.model_dump() == cfg.input.model_dump()  # the digest stays the job file's


def test_filter_nests_under_the_date_by_default_and_above_it_when_told() -> None:
    under = InputConfig(path="/w/t", partition_filter={"region": "eu"})
    assert partition_path(under, DAY) == "/w/t/ds=2026-11-22/region=eu"
    above = InputConfig(
        path="/w/t", partition_filter={"region": "eu"}, partitioned_by=["region", "ds"]
    )
    assert partition_path(above, DAY) == "/w/t/region=eu/ds=2026-11-22"
    deeper = InputConfig(path="/w/t", partitioned_by=["ds", "hour"])  # hours read whole
    assert partition_path(deeper, DAY) == "/w/t/ds=2026-11-22"
    typed = InputConfig(path="/w/t", partition_filter={"year": 2026, "live": True})
    assert partition_path(typed, DAY) == "/w/t/ds=2026-11-22/year=2026/live=true"


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ({"partitioned_by": ["region", "ds"]}, r"\['region'\] nest above a fixed one"),
        ({"partition_filter": {"ds": "x"}}, "fixes ds, the date column"),
        ({"partition_filter": {"region": "eu"}, "partitioned_by": ["ds"]}, "not partition"),
        ({"partitioned_by": ["region"]}, "not partitioned by ds"),
        ({"partition_filter": {"region": "e/u"}}, "cannot be a directory name"),
        ({"partition_filter": {"re gion": "eu"}}, "not a plain name"),
    ],
)
def test_filters_that_cannot_pick_one_directory_are_refused(tmp_path, inputs, problem) -> None:
    with pytest.raises(ConfigError, match=rf"input(\.partition_filter)?: .*{problem}"):
        load_config(job_file(tmp_path, {"path": "/w/t", **inputs}))


def test_table_partitioning_is_checked_when_resolved() -> None:
    cfg = InputConfig(table="w.t", partition_filter={"region": "eu"})
    assert cfg.resolved("/l", ("region", "ds")).nesting == ("region", "ds")
    with pytest.raises(ConfigError, match=r"input\.table w\.t: .*\['country'\] nest above"):
        cfg.resolved("/l", ("country", "region", "ds"))


def test_missing_partition_lists_dates_in_their_own_format(tmp_path) -> None:
    root = tmp_path / "t"
    for name in ("region=eu/dt=20261120", "region=eu/dt=20261121", "region=us/dt=20261122"):
        (root / name).mkdir(parents=True)
    (root / "region=eu" / "dt=latest").mkdir()  # not a date: left out
    cfg = InputConfig(
        path=str(root),
        partition_column="dt",
        partition_format="yyyyMMdd",
        partition_filter={"region": "eu"},
        partitioned_by=["region", "dt"],
    )
    assert available_dates(cfg) == ["2026-11-20", "2026-11-21"]
    message = str(missing_partition(cfg, DAY))
    assert f"{root}/region=eu/dt=20261122" in message
    assert "['2026-11-20', '2026-11-21']" in message
