"""A throwaway ``redis-server`` on loopback, as its own process group: the online feature
store of ``make demo-stream``.

For development only (a deployment has its own Redis): no persistence, a free port, stopped
with its whole process group. Outside the import layers, like ``kafka_broker.py``: nothing in
the package imports it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from batch_serving.ports import free_port


class RedisUnavailable(RuntimeError):
    """``redis-server`` is not on PATH or did not answer a PING."""


class LocalRedis:
    """``redis-server`` on a free loopback port; ``url`` once started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable("redis-server is not on PATH (`make system-deps` installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with (self.workdir / "redis.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, *args, "--dir", str(self.workdir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout_s=10)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    assert self.proc is not None
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        self.stop()
                        raise RedisUnavailable(
                            f"redis-server did not start at {self.url}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL if it is still there after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
