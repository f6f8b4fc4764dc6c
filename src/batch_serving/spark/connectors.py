"""Spark's Hadoop connectors: can this session open a URI's scheme, and with which settings?

Spark reaches object stores through Hadoop connector jars (``hadoop-aws`` for ``s3a://``,
``gcs-connector`` for ``gs://``, ``hadoop-azure`` for ``abfss://``) that pyspark's wheel does
not ship (``make jars`` copies hadoop-aws and its AWS SDK bundle into ``jars/s3a/lib``, and
sessions built here get them, see ``spark.session``). Without them the first read dies deep
in the JVM; ``require_scheme`` asks Hadoop for the scheme's FileSystem class up front and turns
a miss into one StorageError (exit 7) naming the jar.

The job's ``storage.s3`` section (endpoint, scheme, region, keys) is what pyarrow uses;
``s3a_conf`` says the same to S3A, so both engines reach the same bucket the same way.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from batch_serving.config import StorageConfig
from batch_serving.errors import StorageError
from batch_serving.spark.connect import is_connect
from batch_serving.storage import is_remote, spark_uri

CONNECTORS = {
    "s3a": (
        "org.apache.hadoop:hadoop-aws (same version as Spark's Hadoop, 3.5.0 for pyspark "
        "4.2.0) and its AWS SDK bundle (`make jars` puts both in jars/s3a/lib)"
    ),
    "gs": "com.google.cloud.bigdataoss:gcs-connector (hadoop3 shaded jar)",
    "abfss": "org.apache.hadoop:hadoop-azure (same version as Spark's Hadoop)",
    "abfs": "org.apache.hadoop:hadoop-azure (same version as Spark's Hadoop)",
}
HADOOP = "spark.hadoop."
SIMPLE_CREDENTIALS = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"


def s3a_conf(storage: StorageConfig) -> dict[str, str]:
    """``spark.hadoop.fs.s3a.*`` settings equal to ``storage.s3``: a custom endpoint is
    addressed path-style (as pyarrow addresses it; S3-compatible servers and loopback need it),
    given keys are used as they are, and without keys S3A keeps its default chain (environment,
    profile, instance role), like pyarrow. Uploads buffer in memory: S3A's disk buffer needs
    Hadoop's checksummed local filesystem, and our sessions use the raw one (``spark.session``:
    no ``.crc`` files), which fails every write with a ClassCastException. Reads use the
    classic stream: Hadoop 3.5's default (``analytics``) caches each object's ETag, so a
    session that reads an input file rewritten in place since (a date's rerun with corrected
    input) fails with HTTP 412."""
    s3 = storage.s3
    conf = {
        "fs.s3a.endpoint.region": s3.region,
        "fs.s3a.fast.upload.buffer": "bytebuffer",
        "fs.s3a.input.stream.type": "classic",
    }
    if s3.endpoint_override:
        conf |= {
            "fs.s3a.endpoint": f"{s3.scheme}://{s3.endpoint_override}",
            "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": str(s3.scheme == "https").lower(),
        }
    if s3.access_key and s3.secret_key:
        conf |= {
            "fs.s3a.access.key": s3.access_key,
            "fs.s3a.secret.key": s3.secret_key.get_secret_value(),
            "fs.s3a.aws.credentials.provider": SIMPLE_CREDENTIALS,
        }
    return {HADOOP + key: value for key, value in conf.items()}


def use_storage(spark: SparkSession, storage: StorageConfig) -> None:
    """Give a running classic session the job's S3A settings (a session this job did not
    build: spark-submit's, a notebook's, a test's). Settings the session was started with
    (``--conf spark.hadoop.fs.s3a.*``) win. S3A reads them when it opens a bucket, so they
    apply to buckets this session has not opened yet. Connect: the server's own settings."""
    if is_connect(spark):
        return
    started = spark.sparkContext.getConf()
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3a_conf(storage).items():
        if not started.contains(key):
            hadoop.set(key.removeprefix(HADOOP), value)


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
