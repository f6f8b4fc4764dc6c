"""Real servers for API tests: uvicorn on a loopback port in a thread, ``batch-serving serve``
and redis-server as processes.

All are stopped by their fixtures (process groups are killed), so nothing outlives the test
session. The benchmark (``bench/api_bench.py``) uses the same helpers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from batch_serving.ports import free_port


class LiveServer:
    """The app over real HTTP on a free loopback port (lifespan on: snapshots load)."""

    def __init__(self, app: Any) -> None:
        from batch_serving.api.server import running_server

        self.port = free_port()
        self._running = running_server(app, self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self._running.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.__exit__(None, None, None)


SERVE = ["-m", "batch_serving.cli", "serve"]


class ApiProcess:
    """``batch-serving serve`` on a free loopback port as its own process group (or another
    ``command``: the module and arguments that go before ``--port``, e.g. uvicorn's).

    It runs the ``batch_serving`` this process imported (its ``src`` leads ``PYTHONPATH``), so a
    test measures the code under test. Ready once ``/health`` answers a status in ``ready``
    (200: a snapshot is loaded; add 503 for an API with nothing to serve).
    """

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        ready: frozenset[int] = frozenset({200}),
        timeout_s: float = 300,
        command: list[str] | None = None,
    ) -> None:
        import httpx

        import batch_serving

        src = str(Path(batch_serving.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, *(command or SERVE), "--port", str(self.port), *args],
            env={**os.environ, **(env or {}), "PYTHONPATH": path},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code in ready:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.perf_counter() - start > timeout_s:
                self.stop()
                raise RuntimeError("API did not become healthy")
            time.sleep(0.05)
        self.load_s = time.perf_counter() - start

    def memory_mb(self) -> dict[str, float]:
        return memory_mb(self.proc.pid)

    def stop(self) -> None:
        stop_group(self.proc, timeout_s=30)

    def __enter__(self) -> ApiProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory in MiB: total, private (anonymous), file-backed (mapped snapshot, libs),
    and the peak total since the process started."""
    fields = {
        "VmRSS:": "rss_mb",
        "RssAnon:": "anon_mb",
        "RssFile:": "file_mb",
        "VmHWM:": "peak_mb",
    }
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(maxsplit=1)[0] if line else ""
        if key in fields:
            out[fields[key]] = round(int(line.split()[1]) / 1024, 1)
    return out


class RedisServer:
    """A throwaway ``redis-server`` on loopback: no persistence, own process group."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server not on PATH (make install-redis installs it)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        stop_group(self.proc, timeout_s=10)


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM to the process group a helper started (``start_new_session``); waits for it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    proc.wait(timeout=timeout_s)


class S3Server:
    """moto's S3 server (the real S3 HTTP protocol) on a loopback port, in its own process
    group; ``storage`` is the job config's ``storage:`` section that reaches it."""

    def __init__(self) -> None:
        import urllib.request

        binary = Path(sys.executable).with_name("moto_server")
        if not binary.exists():
            raise FileNotFoundError(f"{binary} missing (pip install 'moto[server]')")
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{self.endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)

    @property
    def storage(self) -> dict[str, Any]:
        return {
            "s3": {
                "endpoint_override": self.endpoint,
                "scheme": "http",
                "access_key": "testing",
                "secret_key": "testing",
                "allow_bucket_creation": True,
            }
        }

    def stop(self) -> None:
        stop_group(self.proc, timeout_s=10)


def running_under(path: Path) -> list[str]:
    """Command lines of live processes naming ``path`` (a broker's properties, a stream's job
    file, redis-server's --dir): what a test asserts is gone after a run stopped."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline and proc.name != str(os.getpid()):
            found.append(cmdline)
    return found
