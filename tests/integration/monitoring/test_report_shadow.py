"""The run report's shadow section (issue #31.9), on the HTML a real run writes: the champion
vs challenger heading appears once, and the challenger's score histogram has its reference
outline, taken from the challenger's own training profile when no earlier run has one (a
job's first run with `reference: auto`: the champion's training profile has no such column)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import numpy as np
import pytest
from conftest import customers, labelled
from mlflow import MlflowClient

from batch_serving.config import JobConfig
from batch_serving.demo import HGB_TRUSTED, register_pipeline
from batch_serving.monitoring import svg
from batch_serving.monitoring.reference import model_profile
from batch_serving.runs.job import run_score

cloudpickle.register_pickle_by_value(builders)
DAY = dt.date(2026, 4, 1)


class Headings(HTMLParser):
    """The text of every h1-h3."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._open = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("h1", "h2", "h3"):
            self._open = True
            self.found.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3"):
            self._open = False

    def handle_data(self, data: str) -> None:
        if self._open:
            self.found[-1] += data


def plot_of(html: str, column: str) -> str:
    """The SVG of one histogram of the report."""
    match = re.search(rf"<div><b>{re.escape(column)}</b></div>\s*(<svg.*?</svg>)", html, re.S)
    assert match is not None, f"no histogram of {column}"
    return match[1]


def outline_heights(plot: str) -> np.ndarray:
    return np.array(
        [float(h) for h in re.findall(r'<rect class="ref"[^>]*height="([\d.]+)"', plot)]
    )


@pytest.fixture
def report(
    spark: Any,
    tracking_uri: str,
    warehouse: Callable[..., Path],
    job_config: Callable[..., JobConfig],
    tmp_path: Path,
) -> tuple[str, str]:
    """(report HTML, the challenger's model run id) of a first run with a shadow."""
    name = f"report_{tmp_path.name[-10:].replace('-', '_')}"
    client = MlflowClient(tracking_uri)
    champion = register_pipeline(tracking_uri, name, labelled(800, seed=1), "logreg")
    client.set_registered_model_alias(name, "champion", str(champion))
    challenger = register_pipeline(tracking_uri, name, labelled(800, seed=2), "hgb")
    client.set_registered_model_alias(name, "challenger", str(challenger))
    warehouse(customers(500, seed=4), DAY)
    cfg = job_config(
        name,
        members={"challenger": {"name": name, "alias": "challenger", "role": "shadow"}},
        monitoring={"enabled": True, "reference": "auto"},
        model={"skops_trusted_types": HGB_TRUSTED},
    )
    result = run_score(spark, cfg, DAY)
    assert result.report is not None
    run_id = client.get_model_version(name, str(challenger)).run_id
    return result.report.read_text(), str(run_id)


def test_shadow_section_heading_once_and_challenger_outline(
    report: tuple[str, str], tracking_uri: str
) -> None:
    html, challenger_run = report
    parser = Headings()
    parser.feed(html)
    lowered = [h.strip().lower() for h in parser.found]
    assert sum("champion vs challenger" in h for h in lowered) == 1
    assert lowered.count("champion vs shadows") == 1

    champion_plot, challenger_plot = plot_of(html, "score"), plot_of(html, "challenger.score")
    for plot in (champion_plot, challenger_plot):
        assert plot.count('class="ref"') == 10 and "no reference" not in plot
        assert f'stroke="{svg.REFERENCE}"' in plot
    # the outline is the challenger's own training scores (bin shares up to the plot's scale)
    training = model_profile(tracking_uri, challenger_run)
    assert training is not None
    counts = training.counts["score"].counts.astype(float)
    heights = outline_heights(challenger_plot)
    shares = counts / counts.sum()
    assert np.allclose(heights / heights.max(), shares / shares.max(), atol=0.02)
    assert not np.allclose(heights, outline_heights(champion_plot))
