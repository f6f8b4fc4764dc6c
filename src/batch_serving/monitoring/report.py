"""The run report and the index page: self-contained HTML (inline CSS and SVG, no scripts).

Rendered from counts and summaries only (profile, manifest, after-commit record), never from
rows. ``build.py`` gathers the inputs; this module only renders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:26px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:4px 0}th,td{padding:3px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:middle}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#888}.block{color:#fff;background:#c0392b;padding:1px 6px;border-radius:3px}
.warn{background:#f5c542;padding:1px 6px;border-radius:3px}.ok{color:#1e7e34}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plot{border:1px solid #eee;padding:6px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
.bar{background:#3b6fb6;height:10px;display:inline-block}
"""

_RUN = "run.html.j2"

_INDEX = "index.html.j2"

_ENV = Environment(
    loader=PackageLoader("batch_serving.monitoring", "templates"),
    autoescape=select_autoescape(default=True),
)


@dataclass
class RunReport:
    """Everything the run page shows (plots already rendered as SVG strings)."""

    title: str
    job: str
    model: str
    run_id: str
    engine: str
    rows_in: int
    rows_out: int
    quarantined: int
    max_bad_rows: int | str
    reference: str
    history: int
    score_plots: list[dict[str, str]] = field(default_factory=list)
    feature_plots: list[dict[str, str]] = field(default_factory=list)
    drift_rows: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    top_errors: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    cascade: list[dict[str, Any]] = field(default_factory=list)
    durations: list[dict[str, Any]] = field(default_factory=list)


def render_run(report: RunReport) -> str:
    return _ENV.get_template(_RUN).render(r=report, style=_STYLE)


def render_index(models: Sequence[dict[str, Any]]) -> str:
    return _ENV.get_template(_INDEX).render(models=models, style=_STYLE)
