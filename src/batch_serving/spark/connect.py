"""Spark Connect: tell a Connect session from a classic one, and run a local Connect server.

Under Connect the driver program is a gRPC client: it has no ``sparkContext``, no broadcast, no
accumulators and no Py4J gateway (``_jvm``/``_jsc``). The modules that need those take their
Connect path when ``is_connect(spark)``; everything else uses the DataFrame API only, which both
kinds of session share.

``ConnectServer`` starts ``SparkConnectServer`` with spark-submit on loopback, in its own process
group, with the connector jars and the settings a classic session of ours would get, e.g.::

    spark-submit --class org.apache.spark.sql.connect.service.SparkConnectServer \\
        --master local[2] --conf spark.connect.grpc.binding.port=15002 ...
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_serving.config import prepare_process_env
from batch_serving.ports import free_port

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def is_connect(spark: Any) -> bool:
    """True for a Spark Connect session (``pyspark.sql.connect``), without importing the
    Connect client (grpc) when the session is a classic one."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def unsupported(feature: str, instead: str) -> str:
    """The one wording of "Connect cannot do this": the feature and what to use instead."""
    return f"{feature} is not available under Spark Connect (spark.remote); {instead}"


def default_parallelism(spark: Any) -> int:
    """The session's default number of tasks: the SparkContext's under a classic session;
    under Connect (no SparkContext) ``spark.default.parallelism``, else the cores of a
    ``local[N]`` master, else ``spark.sql.shuffle.partitions``."""
    if not is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    configured = spark.conf.get("spark.default.parallelism", None)
    if configured:
        return max(int(configured), 1)
    master = spark.conf.get("spark.master", None) or ""
    local = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", master)
    if local is not None:
        cores = (os.cpu_count() or 1) if local.group(1) == "*" else int(local.group(1))
        return max(cores, 1)
    return max(int(spark.conf.get("spark.sql.shuffle.partitions", "200") or 200), 1)


def _connect_jar() -> Path:
    import pyspark

    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("spark-connect_*.jar"))
    if not jars:
        raise FileNotFoundError("pyspark's jars/ has no spark-connect_*.jar")
    return jars[-1]


@dataclass
class ConnectServer:
    """A local Spark Connect server (``start()`` ... ``stop()``); ``url`` is ``sc://...``."""

    conf: Mapping[str, str] = field(default_factory=dict)
    master: str = "local[2]"
    port: int = field(default_factory=free_port)
    log: Path | None = None
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The spark-submit command: our conf (with ``spark.jars`` + the Connect jar)."""
        settings = dict(self.conf)
        jars = [j for j in settings.pop("spark.jars", "").split(",") if j]
        settings["spark.jars"] = ",".join([str(_connect_jar()), *jars])
        settings["spark.connect.grpc.binding.port"] = str(self.port)
        settings["spark.connect.grpc.binding.address"] = "127.0.0.1"
        submit = Path(sys.executable).with_name("spark-submit")
        cmd = [str(submit), "--class", SERVER_CLASS, "--master", self.master]
        for key, value in settings.items():
            cmd += ["--conf", f"{key}={value}"]
        return [*cmd, "spark-internal"]

    def start(self, timeout: float = 120.0) -> ConnectServer:
        """Start it and wait until its port answers (a JVM start: 5-20 s here)."""
        prepare_process_env(worker_python=sys.executable)  # the server's Python workers
        out = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        self._process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Spark Connect server exited ({self._process.returncode})")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"Spark Connect server on {self.url} not up after {timeout:.0f} s")

    def stop(self) -> None:
        """Stop its whole process group (the JVM and its Python workers)."""
        if self._process is None or self._process.poll() is not None:
            return
        group = os.getpgid(self._process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self._process.wait()
