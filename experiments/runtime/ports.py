"""Ports on 127.0.0.1 for the servers the lab starts: distinct, and out of the kernel's way.

Asking the kernel for port 0 and closing the probe is not enough. A port is free
again once its probe closes, so two calls can hand out the same port (a CI run
started a gateway on the port it had just given the ingest it forwards to). And
bind(0) draws from the ephemeral range, the same range every outgoing connection
(a Kafka client opens several) takes its local port from, so a chosen port can be
taken between choosing and binding. Ports here are drawn at random below that
range, never handed out twice by one process, and checked free by binding them
all at once.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Collection
from pathlib import Path

HOST = "127.0.0.1"
LOWEST = 20000  # below: well-known services' registered ports that a lab machine may run
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_given: set[int] = set()  # every port this process handed out; a restarted server keeps its own
_lock = threading.Lock()


def _pool() -> range:
    """The ports to draw from: LOWEST up to the ephemeral range's start (Linux's default 32768)."""
    try:
        start = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        start = 32768
    return range(LOWEST, start) if start - LOWEST >= 1024 else range(start, 65536)


def free_ports(n: int, avoid: Collection[int] = ()) -> list[int]:
    """`n` distinct ports on 127.0.0.1 that nothing listens on, none in `avoid` nor handed out before here."""
    pool = _pool()
    held: list[socket.socket] = []
    with _lock:
        try:
            for _ in range(50 * n + 100):
                if len(held) == n:
                    break
                port = random.choice(pool)
                if port in _given or port in avoid or any(s.getsockname()[1] == port for s in held):
                    continue
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.bind((HOST, port))
                except OSError:
                    s.close()
                    continue
                held.append(s)
            if len(held) < n:
                raise OSError(f"found {len(held)} of {n} free ports in {pool.start}..{pool.stop - 1} on {HOST}")
            ports = [int(s.getsockname()[1]) for s in held]
            _given.update(ports)
            return ports
        finally:
            for s in held:
                s.close()


def free_port() -> int:
    """One port as `free_ports` gives them: never one this process handed out already."""
    return free_ports(1)[0]
