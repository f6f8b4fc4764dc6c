"""The session's driver options: our log4j2 file and the Derby home both reach the JVM."""

from __future__ import annotations

from pathlib import Path

from batch_serving.config import CatalogConfig
from batch_serving.spark.session import (
    DEFAULT_CONF,
    JAVA_OPTIONS,
    LOG4J2_PROPERTIES,
    catalog_conf,
    merge_conf,
)


def test_driver_java_options_add_up_and_later_layers_win(tmp_path: Path) -> None:
    job = {JAVA_OPTIONS: "-Dlog4j2.configurationFile=/etc/mine.properties", "a": "job"}
    merged = merge_conf(DEFAULT_CONF, {"a": "hive"}, catalog_conf(CatalogConfig(), tmp_path), job)
    assert merged[JAVA_OPTIONS].split() == [
        f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()}",
        f"-Dderby.system.home={tmp_path}",
        "-Dlog4j2.configurationFile=/etc/mine.properties",  # last: the JVM keeps the job's
    ]
    assert merged["a"] == "job"
    assert merge_conf({"a": "1"}, {"a": "2"}) == {"a": "2"}


def test_the_driver_jvm_got_both_options(spark) -> None:  # type: ignore[no-untyped-def]
    """The test session is built by build_session with a Derby metastore: its JVM must have
    both system properties (one would override the other if the options were not merged)."""
    system = spark.sparkContext._jvm.java.lang.System
    assert system.getProperty("log4j2.configurationFile") == LOG4J2_PROPERTIES.as_uri()
    assert system.getProperty("derby.system.home")
    assert LOG4J2_PROPERTIES.is_file()
    assert "logger.hive.level = error" in LOG4J2_PROPERTIES.read_text()
