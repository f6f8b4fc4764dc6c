"""The driver's class-data sharing archive as Java options: present or not, merged with ours."""

from __future__ import annotations

from pathlib import Path

from batch_serving.spark.class_archive import (
    JVM_WARNINGS_TO_STDERR,
    archive_options,
    dump_options,
)
from batch_serving.spark.session import (
    DEFAULT_CONF,
    JAVA_OPTIONS,
    class_archive_conf,
    merge_conf,
)


def test_no_archive_file_adds_no_option(tmp_path: Path) -> None:
    assert archive_options(tmp_path / "driver.jsa") == ""
    assert class_archive_conf("") == {}


def test_an_archive_file_is_mapped_and_jvm_warnings_go_to_stderr(tmp_path: Path) -> None:
    archive = tmp_path / "driver.jsa"
    archive.write_bytes(b"not checked here: the JVM validates it")
    options = archive_options(archive).split()
    assert options[-1] == f"-XX:SharedArchiveFile={archive}"
    assert options[:-1] == JVM_WARNINGS_TO_STDERR.split()


def test_the_archive_adds_up_with_our_options_and_the_job_options_come_last(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "driver.jsa"
    archive.touch()
    job = {JAVA_OPTIONS: "-XX:TieredStopAtLevel=1"}
    merged = merge_conf(DEFAULT_CONF, class_archive_conf(archive_options(archive)), job)
    options = merged[JAVA_OPTIONS].split()
    assert options[0] == DEFAULT_CONF[JAVA_OPTIONS]
    assert f"-XX:SharedArchiveFile={archive}" in options
    assert options[-1] == "-XX:TieredStopAtLevel=1"


def test_the_dumping_jvm_writes_the_archive_at_exit(tmp_path: Path) -> None:
    archive = tmp_path / "driver.jsa"
    assert dump_options(archive).split()[-1] == f"-XX:ArchiveClassesAtExit={archive}"
    assert "SharedArchiveFile" not in dump_options(archive)
