"""Config messages (issue #31 item 9): a misspelt key names the closest key with its full path,
a date that does not exist says so, and a SQLite registry path prints as one path (not
``//tmp/...``). Fast: no JVM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from batch_serving.cli import main
from batch_serving.config import load_config, parse_run_date
from batch_serving.config.paths import absolutize_uri, sqlite_file
from batch_serving.errors import ConfigError, RegistryError
from batch_serving.models.registry import check_registry_reachable


def job(tmp_path: Path) -> dict[str, Any]:
    return {
        "job": "messages",
        "model": {"name": "churn", "alias": "champion", "tracking_uri": "sqlite:///x/mlflow.db"},
        "input": {"path": str(tmp_path / "in")},
        "entity_columns": ["customer_id"],
        "output": {"root": str(tmp_path / "out")},
        "members": {"challenger": {"name": "churn", "alias": "challenger"}},
        "validation": {"input_expectations": [{"type": "not_null", "column": "customer_id"}]},
    }


def refusal(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("section", "typo", "expected"),
    [
        ("output", "scroe_column", "output.score_column"),
        ("", "memebers", "members"),
        ("members.challenger", "rol", "members.challenger.role"),
        ("validation.input_expectations.0", "colum", "validation.input_expectations.0.column"),
        ("monitoring.gates", "score_psi_mx", "monitoring.gates.score_psi_max"),
        ("storage.s3", "regon", "storage.s3.region"),
    ],
)
def test_a_misspelt_key_names_the_closest_key_with_its_full_path(
    tmp_path: Path, section: str, typo: str, expected: str
) -> None:
    data = job(tmp_path)
    node: Any = data
    for part in filter(None, section.split(".")):
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[typo] = 1
    key = f"{section}.{typo}" if section else typo
    assert refusal(tmp_path, data).endswith(
        f"{key}: Extra inputs are not permitted, did you mean '{expected}'?"
    )


def test_a_key_like_no_other_gets_no_guess(tmp_path: Path) -> None:
    data = job(tmp_path)
    data["output"]["zzzz"] = 1
    assert refusal(tmp_path, data).endswith("output.zzzz: Extra inputs are not permitted")


def test_every_problem_keeps_its_own_suggestion(tmp_path: Path) -> None:
    data = job(tmp_path)
    data["output"]["scroe_column"] = "s"
    data["loading"] = {"stratgy": "auto"}
    message = refusal(tmp_path, data)
    assert "output.scroe_column: Extra inputs are not permitted, did you mean " in message
    assert "loading.stratgy: Extra inputs are not permitted, did you mean 'loading.strategy'?" in (
        message
    )
    assert message.count("did you mean") == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-31", "--run-date 2026-11-31 is not a valid date: day is out of range for month"),
        ("2026-02-29", "--run-date 2026-02-29 is not a valid date: day is out of range for month"),
        ("2026-13-01", "--run-date 2026-13-01 is not a valid date: month must be in 1..12"),
        ("20261130", "--run-date must be YYYY-MM-DD, got '20261130'"),
        ("2026-W48-1", "--run-date must be YYYY-MM-DD, got '2026-W48-1'"),
        ("22/11/2026", "--run-date must be YYYY-MM-DD, got '22/11/2026'"),
    ],
)
def test_a_run_date_that_does_not_exist_says_so(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_run_date(value)
    assert str(info.value) == expected


def test_run_dates_that_exist_parse() -> None:
    assert parse_run_date("2028-02-29").isoformat() == "2028-02-29"
    assert str(parse_run_date("2026-11-30", "--to")) == "2026-11-30"
    with pytest.raises(ConfigError, match=r"^--to 2026-11-31 is not a valid date"):
        parse_run_date("2026-11-31", "--to")


def test_score_exits_2_on_a_date_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job(tmp_path)))
    assert main(["score", "--config", str(path), "--run-date", "2026-11-31"]) == 2
    err = capsys.readouterr().err
    assert "2026-11-31 is not a valid date: day is out of range for month" in err


def test_a_sqlite_registry_path_prints_as_one_path(tmp_path: Path) -> None:
    uri = absolutize_uri("sqlite:///mlruns/missing.db", tmp_path)
    assert uri == f"sqlite:///{tmp_path}/mlruns/missing.db"  # four slashes: absolute
    assert sqlite_file(uri) == tmp_path / "mlruns" / "missing.db"
    with pytest.raises(RegistryError) as info:
        check_registry_reachable(uri)
    assert str(info.value) == (
        f"MLflow registry {uri}: database file {tmp_path}/mlruns/missing.db does not exist"
    )


def test_sqlite_file_reads_what_sqlalchemy_reads() -> None:
    assert sqlite_file("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert str(sqlite_file("sqlite:////abs/x.db")) == "/abs/x.db"
    assert sqlite_file("sqlite:///rel/x.db?mode=ro") == Path("rel/x.db")
    assert sqlite_file("http://mlflow:5000") is None
