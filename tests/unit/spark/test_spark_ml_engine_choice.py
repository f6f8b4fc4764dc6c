"""Which engine scores a job, given the runtime of its single model: a Spark ML pipeline
(runtime ``spark``) only by ``spark_ml``; any other engine asked for it, Spark Connect, or
``spark_ml`` asked for another model is a ConfigError (exit 2) naming the flavor and the fix.
No JVM: only the choice is tested here (the scoring is in tests/integration/models)."""

from __future__ import annotations

import pytest

from batch_serving.errors import ConfigError
from batch_serving.spark.engines import choose_engine, engine_named


def test_a_spark_ml_model_picks_spark_ml_under_auto(job_config) -> None:  # type: ignore[no-untyped-def]
    assert choose_engine(job_config("m"), "spark") == "spark_ml"
    assert choose_engine(job_config("m", engine="spark_ml"), "spark") == "spark_ml"
    assert engine_named("spark_ml").name == "spark_ml"
    assert choose_engine(job_config("m"), "sklearn") == "arrow_direct"  # others as before


@pytest.mark.parametrize("engine", ["arrow_direct", "dataframe"])
def test_another_engine_asked_for_a_spark_ml_model_is_refused(job_config, engine: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        choose_engine(job_config("churn_spark", engine=engine), "spark")
    message = str(err.value)
    assert f"engine: {engine}" in message and "models:/churn_spark@champion" in message
    assert "flavor 'spark'" in message and "engine: auto" in message
    assert err.value.exit_code == 2


def test_spark_ml_under_connect_or_for_another_model_is_refused(job_config) -> None:  # type: ignore[no-untyped-def]
    remote = job_config("m", spark={"remote": "sc://127.0.0.1:15002"})
    with pytest.raises(ConfigError, match=r"flavor 'spark'.*Spark Connect"):
        choose_engine(remote, "spark")
    with pytest.raises(ConfigError, match=r"engine: spark_ml scores one model .*another"):
        choose_engine(job_config("m", engine="spark_ml"), "sklearn")
    with pytest.raises(ConfigError, match="several models"):
        choose_engine(
            job_config("m", engine="spark_ml", members={"b": {"name": "n", "alias": "a"}}), None
        )
