"""A free TCP port on loopback, for the local servers the project starts (Kafka broker,
redis-server, Spark Connect, the demo's API)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; the caller binds it soon after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
