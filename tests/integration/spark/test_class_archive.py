"""A class-data sharing archive may cost the speed-up, never a run: what Java 17 does with a
stale or broken archive under the options the driver JVM gets (``archive_options``)."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from batch_serving.spark.class_archive import archive_options

pytestmark = pytest.mark.skipif(
    not (shutil.which("javac") and shutil.which("java")), reason="needs a JDK (javac)"
)

HELLO = 'public class Hello { public static void main(String[] a) { System.out.println("hi"); } }'


def _java(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["java", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture()
def hello_jar(tmp_path: Path) -> Path:
    """A one-class jar: the app classpath an archive is checked against."""
    (tmp_path / "Hello.java").write_text(HELLO)
    subprocess.run(["javac", "Hello.java"], cwd=tmp_path, check=True, timeout=60)
    jar = tmp_path / "hello.jar"
    with zipfile.ZipFile(jar, "w") as out:
        out.write(tmp_path / "Hello.class", "Hello.class")
    return jar


def test_a_matching_archive_is_used(hello_jar: Path, tmp_path: Path) -> None:
    archive = tmp_path / "hello.jsa"
    _java(f"-XX:ArchiveClassesAtExit={archive}", "-cp", str(hello_jar), "Hello")
    assert archive.is_file()
    options = archive_options(archive).split()
    used = _java(*options, "-Xlog:class+load", "-cp", str(hello_jar), "Hello")
    assert used.returncode == 0
    assert "Hello source: shared objects file (top)" in used.stdout


def test_a_stale_archive_only_warns_on_stderr(hello_jar: Path, tmp_path: Path) -> None:
    archive = tmp_path / "hello.jsa"
    _java(f"-XX:ArchiveClassesAtExit={archive}", "-cp", str(hello_jar), "Hello")
    with zipfile.ZipFile(hello_jar, "a") as out:  # the jar changed since the archive was made
        out.writestr("notes.txt", "rebuilt")
    run = _java(*archive_options(archive).split(), "-cp", str(hello_jar), "Hello")
    assert run.returncode == 0
    assert run.stdout == "hi\n"  # stdout is the command's (--json): nothing of the JVM's
    assert "Unable to use shared archive" in run.stderr


def test_a_broken_archive_file_is_ignored(hello_jar: Path, tmp_path: Path) -> None:
    archive = tmp_path / "driver.jsa"
    archive.write_bytes(b"\x00garbage" * 100)
    run = _java(*archive_options(archive).split(), "-cp", str(hello_jar), "Hello")
    assert (run.returncode, run.stdout) == (0, "hi\n")
