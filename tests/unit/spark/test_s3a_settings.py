"""The job's ``storage.s3`` as S3A settings, and where the s3a jars go (no JVM here: the
session that uses them is tested in tests/integration/storage/test_s3_engines.py)."""

from __future__ import annotations

import os
from pathlib import Path

from batch_serving.config import StorageConfig
from batch_serving.spark.connectors import s3a_conf
from batch_serving.spark.session import DRIVER_CLASSPATH, SPARK_JARS, merge_conf, s3a_jars


def test_an_s3_compatible_endpoint_is_addressed_path_style_with_the_jobs_keys() -> None:
    storage = StorageConfig.model_validate(
        {
            "s3": {
                "endpoint_override": "127.0.0.1:9000",
                "scheme": "http",
                "region": "eu-west-1",
                "access_key": "ak",
                "secret_key": "sk",
            }
        }
    )
    conf = s3a_conf(storage)
    assert all(key.startswith("spark.hadoop.fs.s3a.") for key in conf)
    got = {key.removeprefix("spark.hadoop.fs.s3a."): value for key, value in conf.items()}
    assert got == {
        "endpoint": "http://127.0.0.1:9000",
        "path.style.access": "true",
        "connection.ssl.enabled": "false",
        "endpoint.region": "eu-west-1",
        "access.key": "ak",
        "secret.key": "sk",
        "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "fast.upload.buffer": "bytebuffer",  # the disk buffer fails on the raw local fs
        "input.stream.type": "classic",  # analytics: HTTP 412 on a file rewritten in place
    }


def test_aws_itself_keeps_s3as_endpoint_and_credential_chain() -> None:
    conf = s3a_conf(StorageConfig())
    assert "spark.hadoop.fs.s3a.endpoint" not in conf
    assert "spark.hadoop.fs.s3a.access.key" not in conf
    assert "spark.hadoop.fs.s3a.aws.credentials.provider" not in conf
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "us-east-1"


def test_s3a_jars_go_on_the_driver_classpath_locally_and_as_spark_jars_on_a_cluster(
    tmp_path: Path,
) -> None:
    lib = tmp_path / "s3a"
    assert s3a_jars({}, "local[2]", lib) == {}  # no jars/s3a/lib (an installed wheel)
    lib.mkdir()
    assert s3a_jars({}, "local[2]", lib) == {}
    for name in ("hadoop-aws.jar", "bundle.jar"):
        (lib / name).touch()
    jars = [str(lib / "bundle.jar"), str(lib / "hadoop-aws.jar")]
    assert s3a_jars({}, "local[2]", lib) == {DRIVER_CLASSPATH: os.pathsep.join(jars)}
    assert s3a_jars({}, "spark://master:7077", lib) == {SPARK_JARS: ",".join(jars)}
    assert s3a_jars({SPARK_JARS: "/mine.jar"}, "local[2]", lib) == {}  # the job's own wins


def test_connector_jars_and_classpaths_add_up_across_layers() -> None:
    merged = merge_conf(
        {SPARK_JARS: "/k.jar", DRIVER_CLASSPATH: "/a.jar"},
        {SPARK_JARS: "/s3a.jar"},
        {DRIVER_CLASSPATH: "/job.jar", "x": "1"},
        {"x": "2"},
    )
    assert merged == {
        SPARK_JARS: "/k.jar,/s3a.jar",
        DRIVER_CLASSPATH: f"/a.jar{os.pathsep}/job.jar",
        "x": "2",
    }
