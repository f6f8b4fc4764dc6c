"""A run's timeline (issue #30): every step's span since the process started, the JVM's start
beside the model download, the metastore's wake-up beside the scoring, the SQL catalog beside
the MLflow record; written to ``_after_commit.json`` and printed with ``-v``."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import Any

import builders
import pytest
import yaml
from conftest import RUN_DATE, customers, labelled

from batch_serving.cli import main
from batch_serving.runs import timeline
from batch_serving.runs.after_commit import CATALOG_STEP, RECORD_STEP
from batch_serving.runs.context import StepTimer, in_background
from batch_serving.runs.job import (
    FETCH_STEP,
    METASTORE_STEP,
    SESSION_STEP,
    open_session_early,
    prepare_run,
    run_prepared,
    start_session,
)
from batch_serving.tables.manifest import read_after_commit


# ----------------------------------------------------------------------------- no JVM
def test_spans_count_from_the_process_start_and_name_their_thread() -> None:
    timer = StepTimer()
    before = time.perf_counter()
    with timer.step("read"):
        time.sleep(0.02)
    in_background("side-work", lambda: _timed(timer, "beside", 0.05)).result()
    read, beside = timer.spans
    assert read.name == "read" and read.lane == timeline.MAIN_LANE
    assert beside.name == "beside" and beside.lane == "side-work"
    # seconds since the process started: this test process began before ``before``
    assert read.start_s >= timeline.since_start(before) > 0
    assert read.took >= 0.019 and beside.took >= 0.049  # spans are kept to the millisecond
    assert beside.start_s >= read.end_s
    assert timer.durations == {
        "read": pytest.approx(read.took, abs=2e-3),
        "beside": pytest.approx(beside.took, abs=2e-3),
    }


def test_the_process_origin_is_the_process_start_not_the_first_call() -> None:
    """pytest ran for a while before this test: the origin is that far back."""
    age = time.perf_counter() - timeline.process_origin()
    assert age > 0.5  # the interpreter start and pytest's imports at least
    assert timeline.process_origin() == timeline.process_origin()  # one value per process


def test_timeline_lines_order_spans_by_start_and_mark_the_ones_beside() -> None:
    spans = [
        timeline.Span("fetch_models", 1.5, 2.5),
        timeline.Span("startup", 0.0, 1.2),
        timeline.Span("spark_session", 1.5, 6.0, "spark-session"),
    ]
    lines = timeline.timeline_lines(spans, "run x timeline")
    assert lines[0] == "run x timeline (seconds since the process started):"
    assert [line.split()[4] for line in lines[1:]] == ["startup", "fetch_models", "spark_session"]
    assert lines[3].endswith("[beside: spark-session]") and "4.50s" in lines[3]
    assert "[beside" not in lines[1] + lines[2]
    assert timeline.timeline_lines([]) == []


def test_steps_on_several_threads_at_once_lose_no_time() -> None:
    timer = StepTimer()
    threads = [
        threading.Thread(target=_timed, args=(timer, "same", 0.0), name=f"t{i}") for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(timer.spans) == 8
    assert timer.durations["same"] == pytest.approx(sum(s.took for s in timer.spans), abs=0.01)


def _timed(timer: StepTimer, name: str, seconds: float) -> None:
    with timer.step(name):
        time.sleep(seconds)


# ----------------------------------------------------------------------------- with Spark
@pytest.fixture
def model_name(register: Any) -> str:
    model, _ = builders.logreg_pipeline(labelled(300))
    name, _ = register(model, labelled(50)[builders.FEATURES])
    return name


def test_the_session_starts_while_the_models_download(
    spark: Any, model_name: str, warehouse: Any, job_config: Any, monkeypatch: Any
) -> None:
    """The JVM's start (here a session handed over after 1 s) overlaps the download, and
    the run that follows loads the model it fetched instead of downloading it again."""
    from batch_serving.models import loading

    downloads: list[str] = []
    real_download = loading.download_model

    def counted(ref: Any, dst: Any) -> Any:
        downloads.append(ref.uri)
        return real_download(ref, dst)

    monkeypatch.setattr(loading, "download_model", counted)
    warehouse(customers(120))
    prepared = prepare_run(job_config(model_name), RUN_DATE)

    def slow_session() -> Any:
        time.sleep(1.0)
        return spark

    session = open_session_early(prepared.run.cfg, prepared.run.timer, slow_session)
    assert start_session(prepared, session) is spark
    result = run_prepared(spark, prepared)

    spans = {s.name: s for s in result.after.timeline}
    session, fetch = spans[SESSION_STEP], spans[FETCH_STEP]
    assert session.lane == "spark-session" and fetch.lane == timeline.MAIN_LANE
    assert session.start_s < fetch.end_s and fetch.start_s < session.end_s  # they overlap
    assert session.end_s - session.start_s >= 0.998  # each end rounded to the millisecond
    assert len(downloads) == 1  # fetched beside the JVM, not again by the load_model step
    assert result.committed.rows == 120


def test_score_v_prints_the_timeline_and_records_it(
    spark: Any,
    model_name: str,
    warehouse: Any,
    job_config: Any,
    tmp_path: Path,
    caplog: Any,
    capsys: Any,
) -> None:
    """``score -v``: startup, the JVM's start, every step and the post-commit steps, in the
    log and in ``_after_commit.json``; the metastore and the SQL catalog ran beside others."""
    warehouse(customers(150))
    cfg = job_config(model_name, catalog={"enabled": True}, tracking={"log_runs": True})
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    caplog.set_level(logging.DEBUG, logger="batch_serving")

    code = main(["-v", "score", "--config", str(config), "--run-date", str(RUN_DATE)])
    assert code == 0, capsys.readouterr().err

    run_dirs = list((tmp_path / "out" / "_runs" / "predictions" / model_name).iterdir())
    [run_dir] = [d for d in run_dirs if d.is_dir()]
    after = read_after_commit(run_dir)
    assert after is not None
    spans = {s.name: s for s in after.timeline}
    assert set(spans) == set(after.durations_s)  # every timed step has its span
    expected = {"startup", "resolve_model", SESSION_STEP, FETCH_STEP, METASTORE_STEP}
    assert expected | {"read", "score_and_stage", "commit", CATALOG_STEP, RECORD_STEP} <= set(spans)
    assert spans["startup"].start_s == 0.0 and spans["startup"].end_s > 0
    assert spans["startup"].end_s <= spans["resolve_model"].start_s
    # the session is asked for at the run's first step, beside the aliases' resolution
    assert spans[SESSION_STEP].start_s < spans["resolve_model"].end_s
    assert spans[SESSION_STEP].lane == "spark-session"
    assert spans[CATALOG_STEP].lane == "sql-catalog"  # beside the MLflow record
    assert spans[RECORD_STEP].lane == timeline.MAIN_LANE
    assert spans[METASTORE_STEP].lane == "metastore"
    assert spans[CATALOG_STEP].start_s >= spans["commit"].end_s
    assert after.tables == [f"predictions.{model_name}"] and after.mlflow_run_id

    lines = [r.getMessage() for r in caplog.records if r.name == "batch_serving"]
    head = f"run {after.run_id} timeline (seconds since the process started):"
    assert head in lines
    printed = lines[lines.index(head) + 1 :]
    for name in ("startup", SESSION_STEP, "score_and_stage", CATALOG_STEP, RECORD_STEP):
        assert any(f"s  {name}" in line for line in printed), (name, printed)


def test_a_backfill_starts_one_session_for_all_its_dates(
    spark: Any,
    model_name: str,
    warehouse: Any,
    job_config: Any,
    tmp_path: Path,
    capsys: Any,
) -> None:
    import json

    second = RUN_DATE + dt.timedelta(days=1)
    warehouse(customers(80), RUN_DATE)
    warehouse(customers(90), second)
    cfg = job_config(model_name, catalog={"enabled": True})
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))

    args = ["backfill", "--config", str(config), "--from", str(RUN_DATE), "--to", str(second)]
    assert main([*args, "--json"]) == 0
    first_run, second_run = json.loads(capsys.readouterr().out)["runs"]
    first_spans = {s["name"] for s in first_run["after_commit"]["timeline"]}
    second_spans = {s["name"] for s in second_run["after_commit"]["timeline"]}
    assert {"startup", SESSION_STEP, FETCH_STEP} <= first_spans
    assert not {"startup", SESSION_STEP, FETCH_STEP} & second_spans  # same session, same process
    assert CATALOG_STEP in second_spans
    assert second_run["manifest"]["output"]["rows"] == 90
