"""The catalogue of Great Expectations classes that job files may name, built from GX itself.

Config loading must not import GX (about 1-4 s, and Airflow's virtualenv does not have it),
so ``config/gx_expectations.json`` holds, per GX expectation class, its snake-case type and
the arguments it accepts. This module regenerates that file from the installed GX:

    python -m batch_serving.quality.catalog      # after changing the great-expectations pin

``tests/test_gx_gates.py`` fails while the committed file differs from what GX reports.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).resolve().parents[1] / "config" / "gx_expectations.json"
# Pydantic fields of every GX expectation that a job file has no business setting.
INTERNAL_FIELDS = frozenset({"id", "rendered_content", "batch_id"})


def build_catalog() -> dict[str, Any]:
    """``{"great_expectations": version, "expectations": {ClassName: {type, args, required}}}``."""
    import great_expectations as gx
    from great_expectations.expectations.expectation import Expectation

    entries: dict[str, dict[str, Any]] = {}
    for name in sorted(dir(gx.expectations)):
        cls = getattr(gx.expectations, name)
        if not inspect.isclass(cls) or not issubclass(cls, Expectation) or cls is Expectation:
            continue
        fields = {k: f for k, f in cls.__fields__.items() if k not in INTERNAL_FIELDS}
        entries[name] = {
            "type": cls.expectation_type,
            "args": sorted(fields),
            "required": sorted(k for k, f in fields.items() if f.required),
        }
    return {"great_expectations": gx.__version__, "expectations": entries}


def render(catalog: dict[str, Any]) -> str:
    return json.dumps(catalog, indent=1, sort_keys=True) + "\n"


def main() -> int:
    CATALOG_FILE.write_text(render(build_catalog()))
    print(f"wrote {CATALOG_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
