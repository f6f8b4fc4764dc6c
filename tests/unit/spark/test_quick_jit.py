"""``spark.jit``: which commands' driver JVM stops at the quick compiler tier, and how the
option joins the others (the job's own Java options still come last and win). No JVM."""

from __future__ import annotations

import pytest

from batch_serving.spark.session import JAVA_OPTIONS, QUICK_JIT, local_conf, quick_jit


@pytest.mark.parametrize(
    ("engine", "jit", "batch", "quick"),
    [
        ("auto", "auto", True, True),  # score / backfill: Python tasks do the work
        ("arrow_direct", "auto", True, True),
        ("dataframe", "auto", True, False),  # the JVM reads and writes the rows
        ("auto", "auto", False, False),  # stream, sql: long-lived or JVM-heavy
        ("dataframe", "quick", False, True),  # asked for: always
        ("auto", "full", True, False),
    ],
)
def test_which_runs_get_the_quick_tier(  # type: ignore[no-untyped-def]
    job_config, engine: str, jit: str, batch: bool, quick: bool
) -> None:
    cfg = job_config("m", engine=engine, spark={"jit": jit})
    assert quick_jit(cfg, batch) is quick


def test_auto_follows_the_engine_auto_will_pick(job_config) -> None:  # type: ignore[no-untyped-def]
    """``engine: auto`` picks ``dataframe`` for keep_last and for a URL Spark must read: the
    JVM reads the rows then, so its compiler stays full."""
    keep_last = job_config("m", validation={"duplicate_ids": "keep_last"})
    assert quick_jit(keep_last, batch=True) is False
    remote_input = job_config("m", input={"path": "hdfs://nn/features"})
    assert quick_jit(remote_input, batch=True) is False
    table = job_config(
        "m", input={"table": "features.customers", "path": None}, catalog={"enabled": True}
    )
    assert quick_jit(table, batch=True) is True  # not resolved yet: no error, arrow_direct
    connect = job_config("m", engine="arrow_direct", spark={"remote": "sc://127.0.0.1:15002"})
    assert quick_jit(connect, batch=True) is False  # no JVM of ours (and no arrow_direct)


def test_the_option_joins_ours_and_the_jobs_own_come_last(job_config) -> None:  # type: ignore[no-untyped-def]
    own = "-XX:TieredStopAtLevel=4"
    cfg = job_config("m", spark={"conf": {JAVA_OPTIONS: own}})
    options = local_conf(cfg.spark, {}, jit_quick=True)[JAVA_OPTIONS].split()
    assert QUICK_JIT[JAVA_OPTIONS] in options
    assert options[-1] == own  # the JVM keeps the last of a repeated -XX flag: the job's
    assert any(o.startswith("-Dlog4j2.configurationFile=") for o in options)
    plain = local_conf(cfg.spark, {}, jit_quick=False)[JAVA_OPTIONS].split()
    assert QUICK_JIT[JAVA_OPTIONS] not in plain
