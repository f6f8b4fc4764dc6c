"""No JVM handles outside the classic-only modules (issue #26), and Connect's plain-Python seams.

Spark Connect clients have no ``sparkContext``, ``_jvm``, ``_jsc`` or broadcast: code that uses
them must live in a module listed below, behind ``spark.connect.is_connect`` (or be one of the
engines/commands Connect refuses by name). A new use elsewhere fails this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from batch_serving.errors import ConfigError
from batch_serving.spark.connect import is_connect
from batch_serving.spark.engines import choose_engine
from batch_serving.spark.errors import reading

SRC = Path(__file__).resolve().parents[3] / "src" / "batch_serving"
JVM_NAMES = {"sparkContext", "_jvm", "_jsc", "_jsparkSession", "broadcast"}
# module -> why it may touch the JVM
CLASSIC_ONLY = {
    "spark/connect.py": "default_parallelism: the SparkContext's, read under classic only",
    "spark/session.py": "spark-submit conf lookup and log4j level, classic sessions only",
    "spark/delivery.py": "broadcast + accumulators; Connect takes the artifact path",
    "spark/task_counts.py": "accumulators; Connect refuses by name",
    "spark/connectors.py": "Hadoop FileSystem probe; skipped under Connect",
    "spark/catalog.py": "metastore shortcut inside try, falls back to SQL",
    "spark/metastore.py": "Hive client wake-up; no JVM object under Connect: nothing to wake",
    "spark/engines/arrow_direct.py": "RDD tasks; Connect refuses the engine by name",
}


def jvm_uses(path: Path) -> list[str]:
    """``name@line`` of every attribute access or call to a JVM-only name in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in JVM_NAMES:
            found.append(f"{node.attr}@{node.lineno}")
    return found


def test_jvm_handles_only_in_classic_only_modules() -> None:
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel not in CLASSIC_ONLY and (uses := jvm_uses(path)):
            offenders[rel] = uses
    assert offenders == {}, f"JVM-only names outside {sorted(CLASSIC_ONLY)}: {offenders}"


def test_the_scan_sees_a_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f(spark):\n    return spark.sparkContext.broadcast(1)\n")
    assert jvm_uses(sample) == ["broadcast@2", "sparkContext@2"] or sorted(jvm_uses(sample)) == [
        "broadcast@2",
        "sparkContext@2",
    ]


def test_every_allowed_module_exists() -> None:
    assert [m for m in CLASSIC_ONLY if not (SRC / m).is_file()] == []


def test_remote_jobs_take_the_dataframe_engine(job_config) -> None:  # type: ignore[no-untyped-def]
    url = "sc://127.0.0.1:15002"
    assert choose_engine(job_config("m", spark={"remote": url})) == "dataframe"
    with pytest.raises(ConfigError, match=r"engine: arrow_direct .* not available under Spark"):
        choose_engine(job_config("m", spark={"remote": url}, engine="arrow_direct"))


def test_remote_must_be_a_connect_url(job_config) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="sc://host:port"):
        job_config("m", spark={"remote": "spark://127.0.0.1:7077"})


def test_a_classic_object_is_not_connect() -> None:
    assert not is_connect(object())


def test_connect_error_text_loses_the_jvm_stack() -> None:
    def fail() -> None:
        raise RuntimeError(
            "[PATH_NOT_FOUND] Path does not exist: file:/x/y.parquet. SQLSTATE: 42K03\n\n"
            "JVM stacktrace:\norg.apache.spark.sql.AnalysisException\n"
            "Caused by: java.io.IOException: unrelated inner frame\n\tat org.apache.X(X.scala:1)"
        )

    with pytest.raises(Exception) as caught:
        reading(fail, "/x")
    message = str(caught.value)
    assert "Path does not exist: file:/x/y.parquet" in message
    assert "unrelated inner frame" not in message and "JVM stacktrace" not in message
