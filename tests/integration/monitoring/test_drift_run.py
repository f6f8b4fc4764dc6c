"""Drift in real scoring runs (Spark, MLflow registry, files): the profile a run stores equals
an in-process profile of the same rows and scores, drift numbers equal an in-process
comparison, publish refuses over the threshold and allows under it, ``runs --json``, the
report (parsed, < 2 MB at 2M rows, rendered in headless Chromium)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import customers, labelled

from batch_serving.cli import main
from batch_serving.config import JobConfig
from batch_serving.monitoring.browser import find_browser, screenshot
from batch_serving.monitoring.build import build_reports
from batch_serving.monitoring.drift import compare
from batch_serving.monitoring.profile import PROFILE_NAME, Profile, profile_table, read_profile
from batch_serving.runs.job import run_score

cloudpickle.register_pickle_by_value(builders)
DAYS = [dt.date(2026, 3, d) for d in (1, 2, 3)]
RUNS_KEYS = {
    "run_id",
    "run_date",
    "status",
    "model_version",
    "rows_in",
    "rows_out",
    "quarantined",
    "validation",
    "drift_gate",
    "score_psi",
    "max_psi",
    "max_psi_column",
    "blocking",
    "warnings",
    "report",
}


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    """A day whose customers look different: short tenure, high charges, monthly contracts."""
    out = frame.copy()
    out["tenure_months"] = (out["tenure_months"] * 0.15).round().astype(out["tenure_months"].dtype)
    out["monthly_charges"] = out["monthly_charges"] + 45.0
    out["contract"] = "month-to-month"
    return out


def expected_profile(spec_of: Profile, frame: pd.DataFrame, champion: Any, shadow: Any) -> Profile:
    """The rows and the models' scores, profiled in-process with the run's bins."""
    table = pa.Table.from_pandas(frame[builders.FEATURES], preserve_index=False)
    score = champion.predict_proba(frame[builders.FEATURES])[:, 1]
    challenger = shadow.predict_proba(frame[builders.FEATURES])[:, 1]
    table = table.append_column("score", pa.array(score))
    table = table.append_column(
        "champion", pa.StructArray.from_arrays([pa.array(score)], ["score"])
    )
    table = table.append_column(
        "challenger", pa.StructArray.from_arrays([pa.array(challenger)], ["score"])
    )
    return profile_table(spec_of.spec, table)


def same_counts(got: Profile, want: Profile) -> None:
    assert [c.name for c in got.spec.columns] == [c.name for c in want.spec.columns]
    for name, counts in want.counts.items():
        mine = got.counts[name]
        assert mine.counts.tolist() == counts.counts.tolist(), name
        assert (mine.rows, mine.nulls, mine.nans) == (counts.rows, counts.nulls, counts.nans), name


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(1 for t, a in self.tags if t == tag and (cls is None or a.get("class") == cls))


def parsed(path: Path) -> Tags:
    tags = Tags()
    tags.feed(path.read_text())
    return tags


@pytest.fixture
def world(spark: Any, register: Any, warehouse: Any, job_config: Any) -> dict[str, Any]:
    champion, _ = builders.logreg_pipeline(labelled(800))
    shadow, _ = builders.logreg_pipeline(labelled(800, seed=9))
    sample = customers(200)[builders.FEATURES]
    name, _ = register(champion, sample)
    register(shadow, sample, name=name, alias="challenger")
    frames = [customers(600, seed=3), customers(600, seed=4), shifted(customers(600, seed=5))]
    for day, frame in zip(DAYS, frames, strict=True):
        warehouse(frame, day)
    cfg: JobConfig = job_config(
        name,
        members={"challenger": {"name": name, "alias": "challenger", "role": "shadow"}},
        monitoring={"enabled": True, "reference": "previous"},
    )
    results = [run_score(spark, cfg, day) for day in DAYS]
    return {
        "cfg": cfg,
        "frames": frames,
        "results": results,
        "champion": champion,
        "shadow": shadow,
    }


@pytest.mark.slow
def test_drift_runs_publish_gate_runs_and_report(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg: JobConfig = world["cfg"]
    results, frames = world["results"], world["frames"]
    profiles = []
    for result, frame in zip(results, frames, strict=True):
        partition = result.committed.path
        stored = read_profile(partition / PROFILE_NAME)
        assert stored is not None
        run_copy = read_profile(
            Path(cfg.output.root)
            / "_runs"
            / "predictions"
            / cfg.model.name
            / result.manifest.run_id
            / "profile.json"
        )
        assert run_copy is not None and run_copy.to_dict() == stored.to_dict()
        # the counts gathered by the tasks == the same rows and scores profiled in-process
        same_counts(stored, expected_profile(stored, frame, world["champion"], world["shadow"]))
        profiles.append(stored)
    names = [c.name for c in profiles[0].spec.columns]
    assert names[:2] == ["score", "challenger.score"]  # the champion's score IS the served one
    assert set(builders.FEATURES) <= set(names)
    # every run kept the first run's bins (its profile is the reference chain)
    assert all(p.spec == profiles[0].spec for p in profiles)

    first, second, third = (r.manifest.drift for r in results)
    assert first["columns"] == {} and first["references"] == []
    for drift, current, reference in (
        (second, profiles[1], profiles[0]),
        (third, profiles[2], profiles[1]),
    ):
        want = {d.name: d for d in compare(current, [reference])}
        assert set(drift["columns"]) == set(want)
        for name, values in drift["columns"].items():
            assert values["psi"] == pytest.approx(want[name].psi, abs=1e-12)
            assert values["js"] == pytest.approx(want[name].js, abs=1e-12)
    assert second["columns"]["score"]["psi"] < 0.1
    score_psi = third["columns"]["score"]["psi"]
    assert score_psi > second["columns"]["score"]["psi"]
    assert third["columns"]["contract"]["psi"] > 1  # every row month-to-month

    # publish: refused just over the day's score PSI (exit 8 naming score and value), then
    # allowed with the threshold just above it
    def conf(limit: float) -> Path:
        data = cfg.model_dump(mode="json")
        data["monitoring"]["gates"] = {"score_psi_max": limit, "feature_psi_max": None}
        path = tmp_path / f"job-{limit}.yaml"
        path.write_text(json.dumps(data))
        return path

    tight, loose = conf(round(score_psi - 0.005, 4)), conf(round(score_psi + 0.005, 4))
    capsys.readouterr()
    assert main(["publish", "--config", str(tight), "--run-date", str(DAYS[2])]) == 8
    err = capsys.readouterr().err
    assert f"score score PSI {score_psi:.4f} > {round(score_psi - 0.005, 4)}" in err
    assert main(["publish", "--config", str(loose), "--run-date", str(DAYS[2])]) == 0
    assert "published" in capsys.readouterr().out

    # runs --json: stable keys, one committed row per date, the gate as publish sees it
    assert main(["runs", "--config", str(tight), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["run_date"] for r in listed["runs"]] == [str(d) for d in DAYS]
    assert all(set(r) == RUNS_KEYS for r in listed["runs"])
    assert [r["status"] for r in listed["runs"]] == ["committed"] * 3
    assert [r["rows_out"] for r in listed["runs"]] == [600] * 3
    assert [r["drift_gate"] for r in listed["runs"]][::2] == ["no_reference", "blocked"]
    assert listed["runs"][2]["score_psi"] == pytest.approx(score_psi)
    assert main(["runs", "--config", str(tight)]) == 0
    assert "blocked" in capsys.readouterr().out

    # report: rebuilt by the command, parsed: plots, drift table, gates, flips, durations
    assert main(["report", "--config", str(tight), "--run-date", str(DAYS[2])]) == 0
    report = Path(capsys.readouterr().out.strip())
    assert report == results[2].report
    # the run built it after the commit: timed with the post-commit steps, not the manifest's
    assert results[2].after.durations_s["report"] > 0
    assert "report" not in results[2].manifest.durations_s
    tags = parsed(report)
    assert tags.count("svg", "hist") == len(names)  # 2 scores + every feature
    assert tags.count("svg", "spark") == len(third["columns"])
    assert tags.count("table", "drift") == 1 and tags.count("table", "flips") == 1
    assert tags.count("table", "gates") == 1 and tags.count("table", "durations") == 1
    assert tags.count("span", "block") >= 1  # the score row blocks publish under `tight`
    text = report.read_text()
    assert "champion vs challenger" in text and "score_and_stage" in text
    index = Path(cfg.output.root) / "_runs" / "index.html"
    assert parsed(index).count("a") >= 3

    # < 2 MB whatever the row count: the same report from a profile of 2M rows
    big = two_million_profile(profiles[2])
    big.write(results[2].committed.path / PROFILE_NAME)
    big_report = build_reports(cfg, DAYS[2])
    assert big_report.stat().st_size < 2_000_000
    assert parsed(big_report).count("svg", "hist") == len(names)

    # renders in headless Chromium without console messages; the screenshot is kept
    if find_browser() is None:
        pytest.fail("chromium is not installed (make system-deps)")
    png = tmp_path / "report.png"
    console = screenshot(big_report, png)
    assert console == []
    assert png.stat().st_size > 20_000  # a page with plots, not a blank one
    artifacts = Path(__file__).resolve().parents[3] / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(png, artifacts / "drift_report.png")


def two_million_profile(like: Profile, rows: int = 2_000_000) -> Profile:
    """A profile of 2M synthetic rows with ``like``'s columns and bins, computed in-process."""
    rng = np.random.default_rng(0)
    columns: dict[str, pa.Array] = {}
    structs: dict[str, dict[str, pa.Array]] = {}
    for spec in like.spec.columns:
        if spec.kind == "categorical":
            values: pa.Array = pa.array(rng.choice([*spec.categories, "new"], rows))
        else:
            lo, hi = (spec.edges[0], spec.edges[-1]) if spec.edges else (0.0, 1.0)
            values = pa.array(rng.uniform(lo - 1, hi + 1, rows))
        key, _, field = spec.name.partition(".")
        if field:
            structs.setdefault(key, {})[field] = values
        else:
            columns[spec.name] = values
    for key, fields in structs.items():
        columns[key] = pa.StructArray.from_arrays(list(fields.values()), list(fields))
    profile = profile_table(like.spec, pa.table(columns), like.source)
    assert profile.counts["score"].rows == rows
    return profile


@pytest.mark.slow
def test_dataframe_engine_gathers_the_same_profile(
    spark: Any, register: Any, warehouse: Any, job_config: Any
) -> None:
    """mapInArrow tasks count through the accumulator: equal to the rows profiled in-process."""
    champion, _ = builders.logreg_pipeline(labelled(800))
    name, _ = register(champion, customers(200)[builders.FEATURES])
    frame = customers(500, seed=11)
    warehouse(frame, DAYS[0])
    cfg = job_config(
        name, engine="dataframe", monitoring={"enabled": True}, tracking={"log_runs": True}
    )
    result = run_score(spark, cfg, DAYS[0])
    assert result.manifest.scoring.engine == "dataframe"
    # the MLflow run record carries the run's profile and report
    from mlflow import MlflowClient

    client = MlflowClient(cfg.model.tracking_uri)
    assert result.after.mlflow_run_id is not None
    logged = {
        Path(a.path).name
        for a in client.list_artifacts(result.after.mlflow_run_id, "batch_serving")
    }
    assert {"profile.json", "report.html", "_manifest.json"} <= logged
    profile = read_profile(result.committed.path / PROFILE_NAME)
    assert profile is not None
    table = pa.Table.from_pandas(frame[builders.FEATURES], preserve_index=False)
    scores = champion.predict_proba(frame[builders.FEATURES])[:, 1]
    table = table.append_column("score", pa.array(scores))
    same_counts(profile, profile_table(profile.spec, table))
    assert profile.counts["score"].rows == 500
