"""The driver JVM's class-data sharing archive (Java 17 AppCDS), made once at install time.

A run's driver JVM loads ~19,000 classes (Spark, Scala, Hive, Derby, DataNucleus, Delta), only
~1,200 of them from the JDK's own archive: parsing and verifying the rest is a large part of
the JVM start's CPU. ``make class-archive`` runs a small local job (session with the Hive
metastore, a Parquet write and read, an Arrow task, a table registered) in a JVM started with
``-XX:ArchiveClassesAtExit``; later sessions map that archive (``-XX:SharedArchiveFile``).

The archive only ever costs the speed-up, never a run: a missing file adds no option, and
a stale archive (pyspark or a jar changed, another classpath, another JDK) is refused by the
JVM itself, which then loads classes as usual (``-Xshare:auto``, Java's default). Its
refusal is a JVM warning; such warnings go to stderr (``JVM_WARNINGS_TO_STDERR``), since the
driver JVM shares the command's stdout, which ``--json`` keeps for its record.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# Beside the connector jars of the checkout (``jars/lib``); ignored by git, made by the Makefile.
ARCHIVE = Path(__file__).resolve().parents[3] / "jars" / "cds" / "driver.jsa"
JVM_WARNINGS_TO_STDERR = "-Xlog:disable -Xlog:all=warning:stderr"


def archive_options(archive: Path = ARCHIVE) -> str:
    """The driver's Java options that use ``archive``: none when there is no such file."""
    if not archive.is_file():
        return ""
    return f"{JVM_WARNINGS_TO_STDERR} -XX:SharedArchiveFile={archive}"


def dump_options(archive: Path) -> str:
    """The Java options of the JVM that writes ``archive`` when it exits. Its errors only: the
    dump warns once per class it leaves out (signed jars, pre-Java-6 class files, Derby's
    generated classes), about a thousand expected lines."""
    return f"-Xlog:disable -Xlog:all=error:stderr -XX:ArchiveClassesAtExit={archive}"


def make_archive(archive: Path = ARCHIVE) -> Path:
    """Run the small job in a driver JVM that writes ``archive`` at its exit; the old archive
    is removed first, so the dumping JVM does not map it. The JVM exits when its stdin
    closes (pyspark's gateway watches it); the archive is written then, so this waits."""
    from pyspark import SparkContext

    from batch_serving.config import CatalogConfig, SparkConfig
    from batch_serving.spark.session import JAVA_OPTIONS, build_session

    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="class-archive-") as tmp:
        conf = {JAVA_OPTIONS: dump_options(archive), "spark.sql.shuffle.partitions": "2"}
        spark = build_session(
            SparkConfig(master="local[2]", conf=conf),
            "batch-serving-class-archive",
            catalog=CatalogConfig(enabled=True),
            metastore_dir=Path(tmp) / "_metastore",
        )
        _exercise(spark, Path(tmp))
        jvm = SparkContext._gateway.proc  # type: ignore[union-attr]
        spark.stop()
        jvm.stdin.close()
        jvm.wait(timeout=600)
    return archive


def _exercise(spark: object, tmp: Path) -> None:
    """What a scoring run's driver does, at toy size: Parquet in and out, an Arrow Python task,
    an aggregation, the Hive metastore (database, external table, partition, refresh)."""
    from pyspark.sql import SparkSession

    assert isinstance(spark, SparkSession)
    data = (tmp / "data").as_uri()
    frame = spark.range(1000).selectExpr("id", "id % 7 AS k", "DATE'2026-01-01' AS ds")
    frame.write.partitionBy("ds").parquet(data)
    read = spark.read.parquet(data)
    read.mapInArrow(lambda batches: batches, read.schema).groupBy("k").count().collect()
    spark.sql("CREATE DATABASE IF NOT EXISTS archive")
    spark.sql(
        "CREATE TABLE IF NOT EXISTS archive.t (id BIGINT, k BIGINT, ds DATE) "
        f"USING parquet PARTITIONED BY (ds) LOCATION '{data}'"
    )
    spark.sql("ALTER TABLE archive.t ADD IF NOT EXISTS PARTITION (ds = DATE'2026-01-01')")
    spark.catalog.refreshTable("archive.t")
    spark.sql("SELECT count(*) FROM archive.t").collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ARCHIVE, help=f"default: {ARCHIVE}")
    args = parser.parse_args(argv)
    made = make_archive(args.out)
    if not made.is_file():
        print(f"no class archive written at {made}", file=sys.stderr)
        return 1
    print(f"class archive: {made} ({made.stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
