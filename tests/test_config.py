"""Config loading: validation messages name the key; env overlays; path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from batch_serving.config import load_config, overlay_path_for, parse_run_date
from batch_serving.errors import ConfigError

BASE = {
    "job": "churn",
    "model": {"name": "churn", "alias": "champion", "tracking_uri": "sqlite:///mlruns/m.db"},
    "input": {"path": "data/in"},
    "entity_columns": ["customer_id"],
    "output": {"root": "data/out"},
}


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_repo_config_is_valid() -> None:
    cfg = load_config(REPO / "conf" / "jobs" / "churn.yaml")
    assert cfg.model.selector == "models:/churn@champion"
    assert cfg.features == "from_signature"
    assert Path(cfg.input.path).is_absolute()


def test_relative_paths_and_sqlite_uri_resolve_against_cwd(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(tmp_path / "conf" / "jobs" / "churn.yaml", BASE))
    assert cfg.input.path == str(tmp_path / "data" / "in")
    assert cfg.output.root == str(tmp_path / "data" / "out")
    assert cfg.model.tracking_uri == f"sqlite:///{tmp_path}/mlruns/m.db"


def test_env_overlay_deep_merges(tmp_path) -> None:
    base = write(tmp_path / "conf" / "jobs" / "churn.yaml", BASE)
    write(
        tmp_path / "conf" / "prod" / "jobs" / "churn.yaml",
        {"model": {"tracking_uri": "http://mlflow.internal:5000"}, "spark": {"master": "yarn"}},
    )
    assert overlay_path_for(base, "prod") == tmp_path / "conf" / "prod" / "jobs" / "churn.yaml"
    cfg = load_config(base, env="prod")
    assert cfg.model.tracking_uri == "http://mlflow.internal:5000"
    assert cfg.model.alias == "champion"  # kept from the base file
    assert cfg.spark.master == "yarn"


def test_missing_overlay_is_an_error(tmp_path) -> None:
    base = write(tmp_path / "conf" / "jobs" / "churn.yaml", BASE)
    with pytest.raises(ConfigError, match=r"environment overlay .*prod.* not found"):
        load_config(base, env="prod")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"loading": {"strategy": "teleport"}}, "loading.strategy"),
        ({"entity_columns": []}, "entity_columns"),
        ({"unknown_key": 1}, "unknown_key: Extra inputs are not permitted"),
        ({"model": {"name": "churn", "tracking_uri": "x"}}, "set exactly one of model.alias"),
        ({"model": {**BASE["model"], "version": 0, "alias": None}}, "model.version"),
    ],
)
def test_invalid_values_name_the_key(tmp_path, patch: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "c.yaml", {**BASE, **patch}))


def test_unreadable_and_non_mapping_configs(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_overrides_swap_alias_and_version(tmp_path) -> None:
    cfg = load_config(write(tmp_path / "c.yaml", BASE))
    pinned = cfg.with_overrides(model_version=3)
    assert (pinned.model.alias, pinned.model.version) == (None, 3)
    assert pinned.digest() != cfg.digest()
    assert cfg.with_overrides(model_alias="challenger").model.selector == "models:/churn@challenger"
    with pytest.raises(ConfigError):
        cfg.with_overrides(model_alias="a", model_version=1)


def test_parse_run_date() -> None:
    assert str(parse_run_date("2026-11-22")) == "2026-11-22"
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        parse_run_date("2026-13-01")
