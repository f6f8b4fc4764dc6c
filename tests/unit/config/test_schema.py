"""``batch-serving schema``: the job file's JSON Schema, generated from the typed config."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from batch_serving.cli import main
from batch_serving.config import JobConfig
from batch_serving.config.loader import _deep_merge

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["schema"]) == 0
    parsed: dict[str, Any] = json.loads(out.getvalue())
    return parsed


def job_file(path: Path) -> Any:
    """A YAML job file as JSON data (YAML dates become ISO strings, as JSON would have them)."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text()), default=lambda v: v.isoformat()))


def test_schema_is_json_with_the_top_level_keys(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(JobConfig.model_fields)
    assert {"job", "model", "input", "entity_columns", "output"} <= set(schema["required"])
    assert {"ModelConfig", "InputConfig", "OutputConfig", "MemberConfig"} <= set(schema["$defs"])


def test_every_key_has_a_description(schema: dict[str, Any]) -> None:
    """The schema's descriptions are the field docstrings: a new key without one fails here
    (and would be an empty cell in the generated configuration reference)."""
    objects = {"JobConfig": schema, **schema["$defs"]}
    missing = [
        f"{name}.{key}"
        for name, obj in objects.items()
        for key, prop in obj.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []


def test_shipped_job_file_validates(schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")  # installed with great-expectations
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((REPO / "conf" / "jobs").glob("*.yaml")):
        errors = [
            f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(job_file(path))
        ]
        assert errors == [], path
    # an env overlay (conf/<env>/jobs/) is partial on its own: validate it merged over its base,
    # with the loader's own deep merge
    overlays = sorted(
        p for p in (REPO / "conf").glob("*/jobs/*.yaml") if p.parent.parent.name != "conf"
    )
    assert overlays  # conf/prod/jobs/churn.yaml ships as an example
    for overlay in overlays:
        merged = _deep_merge(job_file(REPO / "conf" / "jobs" / overlay.name), job_file(overlay))
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(merged)]
        assert errors == [], overlay


def test_schema_rejects_what_the_loader_rejects(schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    good = job_file(REPO / "conf" / "jobs" / "churn.yaml")
    validator = jsonschema.Draft202012Validator(schema)
    typo = {**good, "modle": good["model"]}
    wrong_type = {**good, "loading": {"strategy": "sometimes"}}
    bad_rule = {**good, "rules": [{"when": "score > 0.5", "action": "x"}, {"else": "y"}]}
    for bad in (typo, wrong_type, bad_rule):
        assert list(validator.iter_errors(bad)), bad
    assert dt.date.fromisoformat(good["schedule"]["start_date"])  # dates arrive as ISO strings
