"""A run settles its models before it reads anything (``runs.job.prepare_run``): a bad alias or
rule fails with its own exit code and message while the session is still starting beside it
(``open_session_early``), never through it, and the step that failed is logged as failed. No
SparkSession in this file: a session asked for is refused and recorded."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import builders
import pytest
import yaml
from conftest import RUN_DATE, customers, labelled

from batch_serving.cli import main
from batch_serving.runs.context import StepTimer
from batch_serving.runs.job import prepare_run


@pytest.fixture
def registered(register: Any, job_config: Any, tmp_path: Path) -> Any:
    """A registered model (alias ``champion``) and a job config writer for it."""
    model, _ = builders.logreg_pipeline(labelled(200))
    name, version = register(model, labelled(50)[builders.FEATURES])

    def write(**model: Any) -> Path:
        cfg = job_config(name, model=model)
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        return path

    return name, version, job_config, write


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every attempt to build a SparkSession, recorded instead of starting a JVM."""
    from batch_serving.spark import session

    built: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        built.append(repr(args))
        time.sleep(0.5)  # a JVM takes seconds: the run must fail without waiting for it
        raise AssertionError("a SparkSession was requested")

    for name in ("build_session", "job_session"):
        monkeypatch.setattr(session, name, refuse, raising=False)
    return built


def assert_failed_before_the_session(err: str, sessions: list[str]) -> None:
    """The session was asked for beside the run (at most once) and its refusal, still to come
    when the run failed, is nowhere in the output: the run's own error is the only one."""
    assert len(sessions) <= 1
    assert "a SparkSession was requested" not in err
    assert "Traceback" not in err


def test_score_with_a_bad_alias_fails_before_reading_anything(
    registered: Any, sessions: list[str], capsys: pytest.CaptureFixture[str], caplog: Any
) -> None:
    _, _, _, write = registered
    caplog.set_level(logging.INFO)
    path = write(alias="nosuch")
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    err = capsys.readouterr().err
    assert code == 3  # RegistryError
    assert "alias 'nosuch' not found" in err
    assert_failed_before_the_session(err, sessions)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("step resolve_model failed after ") for m in messages), messages
    assert not any(m.startswith("step resolve_model done") for m in messages)
    assert not any(m.startswith("step read") for m in messages)


def test_backfill_with_a_bad_alias_fails_before_reading_anything(
    registered: Any, sessions: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, _, write = registered
    path = write(alias="nosuch")
    last = RUN_DATE + dt.timedelta(days=1)
    code = main(["backfill", "--config", str(path), "--from", str(RUN_DATE), "--to", str(last)])
    assert code == 3
    err = capsys.readouterr().err
    assert "alias 'nosuch' not found" in err
    assert_failed_before_the_session(err, sessions)


def test_a_rule_on_an_output_the_model_lacks_fails_before_reading_anything(
    registered: Any,
    sessions: list[str],
    warehouse: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``champion.prediction`` passes config load (some kinds output it) but this champion is
    a binary classifier: the pinned model says so before Spark starts (exit 2, rule named)."""
    name, _, job_config, _ = registered
    warehouse(customers(40))
    rules = [{"when": "champion.prediction > 0.5", "action": "block"}, {"otherwise": "allow"}]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(job_config(name, rules=rules).model_dump(mode="json")))
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    err = capsys.readouterr().err
    assert code == 2
    assert "rules[0].when: unknown column 'champion.prediction'" in err
    assert "'champion.score'" in err  # what the model does output
    assert_failed_before_the_session(err, sessions)


def test_prepare_run_pins_the_alias_without_spark(registered: Any) -> None:
    from pyspark.sql import SparkSession

    name, version, job_config, _ = registered
    active = SparkSession.getActiveSession()
    prepared = prepare_run(job_config(name), RUN_DATE)
    [(member, ref)] = prepared.resolved
    assert (member.key, ref.name, ref.version, ref.alias) == ("champion", name, version, "champion")
    assert prepared.run.run_date == RUN_DATE
    assert list(prepared.run.timer.durations) == ["resolve_model"]
    assert SparkSession.getActiveSession() is active  # none started by preparing


def test_a_failed_step_is_logged_as_failed(caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="batch_serving.runs.context")
    timer = StepTimer()
    with timer.step("read"):
        pass
    with pytest.raises(ValueError, match="boom"), timer.step("validate"):
        raise ValueError("boom")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "step read ..." and messages[1].startswith("step read done in ")
    assert messages[2] == "step validate ..."
    assert messages[3].startswith("step validate failed after ")
    assert len(messages) == 4  # never "done" for the failed one
    assert list(timer.durations) == ["read", "validate"]  # the failed step is timed too
