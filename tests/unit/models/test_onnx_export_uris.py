"""One parser of ``models:/`` URIs (models/uris.py) behind export-onnx and the notebook API
(issue #27.4): both accept and refuse the same strings, with errors saying why."""

from __future__ import annotations

import pytest

from batch_serving import notebook
from batch_serving.errors import ConfigError
from batch_serving.models.uris import ModelUri, model_config, parse_model_uri
from batch_serving.runs.export_onnx import source_model

GOOD = {
    "models:/churn@champion": ModelUri("churn", "champion", None),
    "models:/churn.v2/12": ModelUri("churn.v2", None, 12),
    "models:/churn_onnx@shadow-2": ModelUri("churn_onnx", "shadow-2", None),
    " models:/churn/1 ": ModelUri("churn", None, 1),
}
BAD = {
    "churn@champion": "starts with models:/",
    "runs:/abc/model": "starts with models:/",
    "models:/churn": "no @alias or /version",
    "models:/churn/0": "version '0': a whole number from 1",
    "models:/churn/latest": "version 'latest'",
    "models:/churn@champ.ion": "alias 'champ.ion': letters, digits",
    "models:/": "no @alias or /version",
}


@pytest.mark.parametrize(("uri", "want"), GOOD.items())
def test_accepted_uris(uri: str, want: ModelUri) -> None:
    assert parse_model_uri(uri) == want
    assert notebook.parse_model_uri(uri) == want  # the notebook API re-exports the same one
    cfg = model_config(uri, "sqlite:///x.db")
    assert (cfg.name, cfg.alias, cfg.version) == tuple(want)
    exported = source_model(uri, "sqlite:///x.db", None)
    assert (exported.name, exported.alias, exported.version) == tuple(want)


@pytest.mark.parametrize(("uri", "why"), BAD.items())
def test_refused_uris_name_the_uri_and_why(uri: str, why: str) -> None:
    for parse in (parse_model_uri, notebook.parse_model_uri):
        with pytest.raises(ConfigError) as refused:
            parse(uri)
        message = str(refused.value)
        assert repr(uri) in message and why in message
        assert "expected models:/<name>@<alias> or models:/<name>/<version>" in message
    with pytest.raises(ConfigError, match="expected models:/"):
        source_model(uri, "sqlite:///x.db", None)


def test_only_models_uris_defines_the_pattern() -> None:
    assert notebook.parse_model_uri is parse_model_uri
    assert not hasattr(notebook, "_MODEL_URI")
