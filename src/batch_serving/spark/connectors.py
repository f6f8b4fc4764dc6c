"""Can this Spark session open a URI's scheme? Fail before scoring, naming what to add.

Spark reaches object stores through Hadoop connector jars (``hadoop-aws`` for ``s3a://``,
``gcs-connector`` for ``gs://``, ``hadoop-azure`` for ``abfss://``) that pyspark's wheel does
not ship. Without them the first read dies deep in the JVM; this check asks Hadoop for the
scheme's FileSystem class up front and turns a miss into one StorageError (exit 7).
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from batch_serving.errors import StorageError
from batch_serving.spark.connect import is_connect
from batch_serving.storage import is_remote, spark_uri

CONNECTORS = {
    "s3a": "org.apache.hadoop:hadoop-aws (same version as Spark's Hadoop) and its AWS SDK bundle",
    "gs": "com.google.cloud.bigdataoss:gcs-connector (hadoop3 shaded jar)",
    "abfss": "org.apache.hadoop:hadoop-azure (same version as Spark's Hadoop)",
    "abfs": "org.apache.hadoop:hadoop-azure (same version as Spark's Hadoop)",
}


def require_scheme(spark: SparkSession, uri: str, purpose: str) -> None:
    """Raise StorageError when Spark has no Hadoop FileSystem for ``uri``'s scheme."""
    if not is_remote(uri) or is_connect(spark):  # Connect: no JVM handle; the read says
        return
    scheme = spark_uri(uri).split("://", 1)[0]
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    try:
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, conf)
    except Exception:  # Py4JJavaError wrapping UnsupportedFileSystemException
        jars = CONNECTORS.get(scheme, f"the Hadoop connector for {scheme}://")
        raise StorageError(
            f"Spark cannot open {scheme}:// (needed for {purpose} {uri}): this Spark has no "
            f"Hadoop FileSystem for that scheme; add {jars} to the session (spark.jars / "
            "--packages), or use engine: arrow_direct, which reads and writes object stores "
            "with pyarrow and needs no jars"
        ) from None
