"""The package installs beside a user's stack: the core imports no optional library, and
every library the code imports is declared, the optional ones in their extra (pyproject.toml).

No network: pyproject is parsed with tomllib, imports are read from the source with ast, and
module -> distribution names come from the installed environment's metadata.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires

import pytest
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SRC = REPO / "src" / "batch_serving"

# optional library (import name) -> the extra that must declare it
OPTIONAL = {
    "pyspark": "spark",
    "fastapi": "api",
    "uvicorn": "api",
    "prometheus_client": "api",
    "redis": "redis",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "skl2onnx": "onnx",
    "great_expectations": "quality",
    "confluent_kafka": "stream",
    "lightgbm": "flavors",
    "xgboost": "flavors",
    "deltalake": "delta",
    "boto3": "s3",
}
# what a client library or a Spark platform imports first: none of OPTIONAL may load
CORE_ENTRY_POINTS = (
    "batch_serving",
    "batch_serving.config",
    "batch_serving.scoring",
    "batch_serving.embedded",
)


def project() -> dict:
    with (REPO / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]


def names(specs: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(s).name) for s in specs}


@functools.cache
def installed() -> dict[str, list[str]]:
    """Import name -> distributions providing it (a scan of the environment: done once)."""
    return packages_distributions()


def dists_of(module: str) -> set[str]:
    return {canonicalize_name(d) for d in installed().get(module, [])}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module imported anywhere in src -> the files importing it."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top != "batch_serving":
                    found.setdefault(top, set()).add(str(path.relative_to(SRC)))
    return found


def closure(declared: set[str]) -> set[str]:
    """The declared distributions and everything they require (as installed here)."""
    seen: set[str] = set()
    todo = list(declared)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        for spec in reqs:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


@pytest.mark.parametrize("module", CORE_ENTRY_POINTS)
def test_core_entry_points_import_no_optional_library(module: str) -> None:
    code = (
        f"import json, sys, {module}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "batch_serving" in loaded
    assert sorted(loaded & set(OPTIONAL)) == []


def test_each_optional_library_is_in_its_extra_and_not_in_the_core() -> None:
    meta = project()
    core = names(meta["dependencies"])
    extras = {extra: names(specs) for extra, specs in meta["optional-dependencies"].items()}
    for module, extra in OPTIONAL.items():
        dists = dists_of(module)
        assert dists, f"{module} is not installed here: cannot map it to a distribution"
        assert dists & extras[extra], f"{module} ({dists}) missing from [{extra}]"
        assert not dists & core, f"{module} ({dists}) is a core dependency"


def test_all_extra_names_every_feature_extra() -> None:
    extras = project()["optional-dependencies"]
    (all_spec,) = extras["all"]
    bundled = Requirement(all_spec).extras
    assert bundled == set(extras) - {"all", "dev"}


def test_every_import_of_the_code_is_declared() -> None:
    """Each third-party module src imports comes from a distribution the core or an extra
    declares, directly or as one of its requirements (starlette through fastapi)."""
    meta = project()
    declared = names(meta["dependencies"])
    for extra, specs in meta["optional-dependencies"].items():
        if extra not in ("dev", "all"):
            declared |= names(specs)
    covered = closure(declared)
    undeclared = {
        module: sorted(files)
        for module, files in third_party_imports().items()
        if not dists_of(module) & covered
    }
    assert undeclared == {}


def test_the_import_scan_sees_optional_imports() -> None:
    """The scan above is not vacuous: it finds the lazy imports inside functions."""
    found = third_party_imports()
    assert "models/adapters/onnx.py" in found["onnxruntime"]
    assert "stream/kafka_sink.py" in found["confluent_kafka"]
    assert "serving/redis_store.py" in found["redis"]


def test_python_312_is_admitted_and_313_is_not() -> None:
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(project()["requires-python"])
    assert "3.11.7" in spec
    assert "3.12.1" in spec
    assert "3.13.0" not in spec
