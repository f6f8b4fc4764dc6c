"""Config loading: validation messages name the key; env overlays; path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from batch_serving import cli
from batch_serving.config import JobConfig, load_config, overlay_path_for, parse_run_date
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


def test_relative_paths_and_sqlite_uri_resolve_against_the_dir_holding_conf(
    tmp_path, monkeypatch
) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # e.g. an Airflow task's temporary working directory
    cfg = load_config(write(project / "conf" / "jobs" / "churn.yaml", BASE))
    assert cfg.input.path == str(project / "data" / "in")
    assert cfg.output.root == str(project / "data" / "out")
    assert cfg.model.tracking_uri == f"sqlite:///{project}/mlruns/m.db"


def test_config_outside_any_conf_dir_resolves_against_cwd(tmp_path, monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(write(tmp_path / "loose" / "churn.yaml", BASE))
    assert cfg.input.path == str(elsewhere / "data" / "in")  # not next to the file
    assert cfg.model.tracking_uri == f"sqlite:///{elsewhere}/mlruns/m.db"


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
        parse_run_date("2026/11/22")


def refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert refused.value.exit_code == 2
    return str(refused.value)


@pytest.mark.parametrize(
    ("input_path", "output_root", "relation"),
    [
        ("data/in", "data/in", "is the same location as"),
        ("data/in", "data/in/scored", "is inside"),
        ("data/out/in", "data/out", "contains"),
        ("data/in", "./data/x/../in/", "is the same location as"),
    ],
    ids=["equal", "output-inside-input", "input-inside-output", "relative-spellings"],
)
def test_output_overlapping_the_input_is_refused_naming_both(
    tmp_path, input_path: str, output_root: str, relation: str
) -> None:
    data = {**BASE, "input": {"path": input_path}, "output": {"root": output_root}}
    message = refusal(write(tmp_path / "conf" / "jobs" / "churn.yaml", data))
    out, inp = (tmp_path / output_root).resolve(), (tmp_path / input_path).resolve()
    assert f"output.root {out} {relation} input.path {inp}" in message


def test_overlap_is_judged_after_resolving_symlinks(tmp_path) -> None:
    table = tmp_path / "warehouse" / "features"
    table.mkdir(parents=True)
    (tmp_path / "shortcut").symlink_to(table)
    data = {**BASE, "input": {"path": str(table)}, "output": {"root": "shortcut/scored"}}
    message = refusal(write(tmp_path / "conf" / "jobs" / "churn.yaml", data))
    assert f"output.root {table / 'scored'} is inside input.path {table}" in message
    # a config built in code (not loaded from a file) is held to the same rule
    data["output"] = {"root": str(tmp_path / "shortcut")}
    with pytest.raises(ValueError, match=r"is the same location as input\.path"):
        JobConfig.model_validate(data)


@pytest.mark.parametrize(("section", "key"), [("publish", "root"), ("catalog", "metastore_dir")])
def test_publish_and_metastore_inside_the_input_are_refused(tmp_path, section, key) -> None:
    data = {**BASE, section: {key: "data/in/" + key}}
    message = refusal(write(tmp_path / "conf" / "jobs" / "churn.yaml", data))
    assert f"{section}.{key} {tmp_path / 'data' / 'in' / key} is inside input.path" in message


@pytest.mark.parametrize(
    ("input_path", "output_root"),
    [
        ("data/in", "data/in2"),  # a common string prefix is not a common directory
        ("data/in2", "data/in"),
        ("s3://bucket/x", "s3://bucket/xy"),
        ("s3://bucket/x/", "s3://other/x"),
        ("s3://bucket/x", "data/x"),
    ],
)
def test_sibling_locations_are_accepted(tmp_path, input_path: str, output_root: str) -> None:
    data = {**BASE, "input": {"path": input_path}, "output": {"root": output_root}}
    cfg = load_config(write(tmp_path / "conf" / "jobs" / "churn.yaml", data))
    assert cfg.output.root.endswith(output_root)


@pytest.mark.parametrize(
    ("input_path", "output_root"),
    [
        ("s3://bucket/x", "s3://bucket/x/out"),
        ("s3://Bucket/x/y/", "s3a://bucket/x//y"),  # same store, other spelling
        ("s3://bucket/x/in", "s3://bucket/x"),
    ],
)
def test_overlapping_uris_are_refused(tmp_path, input_path: str, output_root: str) -> None:
    data = {**BASE, "input": {"path": input_path}, "output": {"root": output_root}}
    message = refusal(write(tmp_path / "conf" / "jobs" / "churn.yaml", data))
    assert f"output.root {output_root} " in message and f"input.path {input_path}:" in message


def test_score_cli_refuses_overlap_before_spark_starts(tmp_path, monkeypatch, capsys) -> None:
    from pyspark.sql import SparkSession

    def no_spark(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Spark session was created")

    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", no_spark)
    data = {**BASE, "input": {"path": "warehouse"}, "output": {"root": "warehouse"}}
    path = write(tmp_path / "conf" / "jobs" / "churn.yaml", data)
    assert cli.main(["score", "--config", str(path), "--run-date", "2026-11-22"]) == 2
    err = capsys.readouterr().err
    table = tmp_path / "warehouse"
    assert f"output.root {table} is the same location as input.path {table}" in err
