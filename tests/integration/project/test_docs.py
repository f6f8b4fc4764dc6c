"""The documentation: hand-written pages under docs/, the README as the front door, and the
pages ``docs/gen.py`` generates from the code (every config key, command, flag, endpoint and
exit code has its row). ``make docs`` then builds the site with ``mkdocs build --strict``
(broken links and anchors fail it); the slow test here runs that build on a copy."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import REPO

from batch_serving.cli.parser import build_parser
from batch_serving.config import JobConfig, ServeSettings
from batch_serving.errors import exit_code_table

DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_gen", DOCS / "gen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def files(gen: ModuleType) -> dict[str, str]:
    generated: dict[str, str] = gen.generate()
    return generated


def hand_written() -> set[str]:
    return {p.name for p in DOCS.glob("*.md")} - {"index.md"}


def nav_pages() -> list[str]:
    """The ``.md`` entries of mkdocs.yml's nav (read as text: the file has mkdocs' own tags)."""
    text = (REPO / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r":\s+(\S+\.md)\s*$", nav, flags=re.M)


def test_every_config_key_is_in_the_reference(gen: ModuleType, files: dict[str, str]) -> None:
    page = files["reference/configuration.md"]
    sections = gen._config_sections(JobConfig)
    assert {"ModelConfig", "MemberConfig", "ExpectationConfig", "EnsembleConfig"} <= {
        m.__name__ for m in sections
    }
    for model, paths in sections.items():
        heading = f"\n## {gen._heading(paths)}\n"
        assert heading in page, heading
        table = page.split(heading, 1)[1].split("\n## ", 1)[0]
        for key, info in model.model_fields.items():
            assert f"| `{key}` |" in table, f"{model.__name__}.{key}"
            assert info.description, f"{model.__name__}.{key} has no docstring"
    for key in ServeSettings.model_fields:
        assert f"`BATCH_SERVING_{key.upper()}`" in page


def test_every_command_and_flag_is_in_the_cli_reference(files: dict[str, str]) -> None:
    page = files["reference/cli.md"]
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert "schema" in commands
    for name, command in commands.items():
        section = page.split(f"\n## batch-serving {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in section, f"{name} {option}"


def test_every_endpoint_is_in_the_api_reference(files: dict[str, str]) -> None:
    import json

    schema = json.loads(files["reference/openapi.json"])
    page = files["reference/api.md"]
    for path, operations in schema["paths"].items():
        for method in operations:
            assert f"\n## {method.upper()} {path}\n" in page
    for name in schema["components"]["schemas"]:
        assert f"\n### {name}\n" in page
    assert json.loads(files["reference/job.schema.json"])["title"] == "JobConfig"


def test_exit_codes_page_shows_the_table_of_the_error_classes(
    gen: ModuleType, files: dict[str, str]
) -> None:
    table = files[gen.EXIT_CODES]
    rows = {int(line.split("|")[1]): line for line in table.splitlines()[2:]}
    expected = exit_code_table()
    assert sorted(rows) == [row.code for row in expected]
    assert {0, 1, 2, 7, 8, 9, 10} <= set(rows)
    for row in expected:
        for meaning in row.meanings:
            assert meaning.replace("|", "\\|") in rows[row.code], (row.code, meaning)
        for name in row.errors:
            assert f"`{name}`" in rows[row.code], (row.code, name)
    assert "`RegistryUnavailableError`" in rows[9]
    page = (DOCS / "exit-codes.md").read_text()
    assert f'--8<-- "{gen.EXIT_CODES}"' in page  # the page includes the generated table


def test_home_page_is_the_readme_with_site_links(files: dict[str, str]) -> None:
    readme = (REPO / "README.md").read_text()
    home = files["index.md"]
    assert "](docs/" in readme
    assert "](docs/" not in home
    assert "](running.md)" in home and "](docs/running.md)" in readme
    assert home.endswith(readme.replace("](docs/", "]("))


def test_a_readme_link_to_a_missing_page_fails(
    gen: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "README.md").write_text("# x\n\n[gone](docs/no-such-page.md)\n")
    monkeypatch.setattr(gen, "REPO", tmp_path)
    with pytest.raises(SystemExit, match=r"docs/no-such-page\.md"):
        gen.index_text()


def test_readme_is_a_short_front_door() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 400
    assert "make demo" in readme and "make test" in readme
    assert not re.search(r"issue #\d|\(#\d+", readme, flags=re.I)
    linked = set(re.findall(r"\]\(docs/([^)#]+\.md)", readme))
    assert linked <= hand_written(), linked - hand_written()
    assert {"running.md", "extending.md", "performance.md", "exit-codes.md"} <= linked


def test_every_command_is_named_in_the_manual() -> None:
    """A new command gets a sentence in a hand-written page (or the README), not only its
    generated reference row."""
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    manual = (REPO / "README.md").read_text() + "".join(
        (DOCS / name).read_text() for name in sorted(hand_written())
    )
    unnamed = [c for c in commands if f"batch-serving {c}" not in manual and f"`{c}`" not in manual]
    assert not unnamed, unnamed


def test_code_map_lists_every_package_and_the_enforced_layers() -> None:
    """The code map names every package under src/batch_serving/ and states the layers of
    ``.importlinter`` (what ``make lint`` enforces) in the same order."""
    page = (DOCS / "code-map.md").read_text()
    packages = sorted(
        d.name for d in (REPO / "src" / "batch_serving").iterdir() if (d / "__init__.py").exists()
    )
    assert {"scoring", "storage", "learning", "features"} <= set(packages)
    assert [p for p in packages if f"`{p}/`" not in page] == []
    contracts = (REPO / ".importlinter").read_text()
    listed = contracts.split("layers =\n", 1)[1].split("\n\n", 1)[0]
    layers = [
        " | ".join(m.strip().removeprefix("batch_serving.") for m in line.split("|"))
        for line in listed.strip().splitlines()
    ]
    assert layers[0] == "cli" and layers[-1] == "config"
    stated = " ".join(page.split("**Layers**", 1)[1].split("```")[1].split())
    assert stated == " > ".join(layers)
    forbidden = contracts.split("[importlinter:contract:no-spark-in-core]", 1)[1]
    for module in ("scoring", "models", "storage", "config"):
        assert f"batch_serving.{module}" in forbidden
        assert f"`{module}`" in page.split("**No pyspark**", 1)[1].split("\n\n", 1)[0]


def test_every_page_is_in_the_nav_and_every_nav_entry_exists(gen: ModuleType) -> None:
    nav = nav_pages()
    generated_pages = {g for g in gen.GENERATED if g.endswith(".md") and g != gen.EXIT_CODES}
    assert len(nav) == len(set(nav)), nav
    assert set(nav) == hand_written() | generated_pages
    assert "extending.md" in nav and "reference/cli.md" in nav


def test_generated_files_are_ignored_and_pages_are_not(gen: ModuleType) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    generated = [f"docs/{name}" for name in gen.GENERATED] + ["site/index.html"]
    pages = [f"docs/{name}" for name in sorted(hand_written())] + ["docs/gen.py"]
    ignored = subprocess.run(
        ["git", "check-ignore", *generated, *pages],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert sorted(ignored) == sorted(generated)


@pytest.mark.slow
def test_site_builds_strict_from_a_copy(gen: ModuleType, tmp_path: Path) -> None:
    """What ``make docs`` does, on a copy of docs/: generate, then ``mkdocs build --strict``
    (a broken link or anchor, a page outside the nav or a missing snippet fails it)."""
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("index.md", "reference"))
    assert gen.main(["--out", str(docs)]) == 0
    config = (REPO / "mkdocs.yml").read_text()
    config = config.replace("docs_dir: docs\n", f"docs_dir: {docs}\n")
    config = config.replace("paths: [src]", f"paths: [{REPO / 'src'}]")
    (tmp_path / "mkdocs.yml").write_text(config)
    result = subprocess.run(
        # never --quiet: it hides warnings from --strict (mkdocs/mkdocs#4126)
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    exit_codes = (tmp_path / "site" / "exit-codes.html").read_text()
    assert "RegistryUnavailableError" in exit_codes  # the snippet was included
    assert (tmp_path / "site" / "reference" / "cli.html").exists()
