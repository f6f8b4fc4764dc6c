"""The documentation generator (``docs/gen.py``): every config key, command, flag and endpoint
has its row, README sections all have a page, and the generated files are not committed.
``make docs`` then builds the site with ``mkdocs build --strict`` (broken links fail it)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from types import ModuleType

import pytest
from conftest import REPO

from batch_serving.cli.parser import build_parser
from batch_serving.config import JobConfig, ServeSettings


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_gen", REPO / "docs" / "gen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def files(gen: ModuleType) -> dict[str, str]:
    generated: dict[str, str] = gen.generate()
    return generated


def test_every_config_key_is_in_the_reference(gen: ModuleType, files: dict[str, str]) -> None:
    page = files["configuration.md"]
    sections = gen._config_sections(JobConfig)
    assert {"ModelConfig", "MemberConfig", "ExpectationConfig", "EnsembleConfig"} <= {
        m.__name__ for m in sections
    }
    for model, paths in sections.items():
        heading = f"### {gen._heading(paths)}\n"
        assert heading in page, heading
        table = page.split(heading, 1)[1].split("\n### ", 1)[0]
        for key, info in model.model_fields.items():
            assert f"| `{key}` |" in table, f"{model.__name__}.{key}"
            assert info.description, f"{model.__name__}.{key} has no docstring"
    for key in ServeSettings.model_fields:
        assert f"`BATCH_SERVING_{key.upper()}`" in page


def test_every_command_and_flag_is_in_the_cli_reference(files: dict[str, str]) -> None:
    page = files["cli.md"]
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert "schema" in commands
    for name, command in commands.items():
        section = page.split(f"\n## batch-serving {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in section, f"{name} {option}"
    assert "| 8 |" in page  # the exit codes table from the README


def test_every_endpoint_is_in_the_api_reference(files: dict[str, str]) -> None:
    import json

    schema = json.loads(files["reference/openapi.json"])
    for path, operations in schema["paths"].items():
        for method in operations:
            assert f"### {method.upper()} {path}\n" in files["api.md"]
    for name in schema["components"]["schemas"]:
        assert f"#### {name}\n" in files["api.md"]
    assert json.loads(files["reference/job.schema.json"])["title"] == "JobConfig"


def test_readme_sections_all_have_a_page(gen: ModuleType) -> None:
    readme = (REPO / "README.md").read_text()
    assert gen.split_readme(readme).sections
    with pytest.raises(SystemExit, match=r"not on any page: \['Brand new'\]"):
        gen.split_readme(readme + "\n## Brand new\n\ntext\n")


def test_links_to_another_page_get_its_name(files: dict[str, str]) -> None:
    assert "](#exit-codes)" not in files["quickstart.md"]
    assert "](cli.md#exit-codes)" in files["quickstart.md"]


def test_generated_files_are_not_committed(gen: ModuleType) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    paths = [f"docs/{name}" for name in gen.GENERATED] + ["site/index.html"]
    ignored = subprocess.run(
        ["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.split()
    assert sorted(ignored) == sorted(paths)
    assert not (set(gen.GENERATED) & {"python-api.md", "gen.py"})  # written by hand
