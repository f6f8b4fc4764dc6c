"""GX's own Data Docs pages for a run's gate results, rendered from ``_validation.json``.

GX's renderer and page template (``ValidationResultsPageRenderer`` + ``DefaultJinjaPageView``)
take ~40 ms per gate, more than the gates themselves cost a 200k-row run, so a passing run does
not render them inside the job: a failing gate renders its pages at once (the run stops anyway,
and that is when people look), and the run report (``monitoring.enabled``, or ``batch-serving
report`` for any run) renders them into the run's directory and links them. The pages load
GX's styles from public CDNs and read fine without them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from batch_serving.storage import AnyPath

log = logging.getLogger(__name__)

VALIDATION_JSON = "_validation.json"


def docs_name(gate: str) -> str:
    return f"_datadocs_{gate}.html"


def render_page(raw: Mapping[str, Any]) -> str:
    """GX's Data Docs page of one gate's suite result (as saved in ``_validation.json``)."""
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    result = ExpectationSuiteValidationResultSchema().load(dict(raw))
    page: str = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    return page


def write_data_docs(
    directory: AnyPath, results: Mapping[str, Mapping[str, Any]] | None = None
) -> list[str]:
    """Each gate's page in ``directory`` (from ``results``, gate -> GX suite result, else from
    the directory's ``_validation.json``); the file names present afterwards. A page that
    cannot be rendered is a warning: the JSON and the summary page still tell it all."""
    if results is None:
        saved = directory / VALIDATION_JSON
        if not saved.is_file():
            return []
        results = {name: gate["gx"] for name, gate in json.loads(saved.read_text()).items()}
    names = []
    for gate, raw in results.items():
        target = directory / docs_name(gate)
        if not target.is_file():
            try:
                target.write_text(render_page(raw))
            except Exception as exc:
                log.warning("GX Data Docs page for the %s gate not rendered: %s", gate, exc)
                continue
        names.append(target.name)
    return names
