"""Is a Kafka node up, asked of Kafka itself: a metadata request answered by the node, listing the brokers.

A log line ("Kafka Server started") can come before the listener serves
metadata, and a restarted node answers before the controller has unfenced it;
the metadata a node returns lists only unfenced brokers, so "my own id is in
the list, and so is every id I wait for" is the signal.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Collection

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from experiments.runtime.kafka.config import HOST


class KafkaNotReady(RuntimeError):
    """The broker did not answer metadata with the expected brokers in time."""


def accepts(port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def admin_client(bootstrap: str, **config: str | int) -> AdminClient:
    """An AdminClient that only logs errors (librdkafka logs every refused connection otherwise)."""
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3, "socket.timeout.ms": 2000, **config})


def live_broker_ids(bootstrap: str, timeout: float = 2.0) -> set[int] | None:
    """Ids of the unfenced brokers that the node(s) at `bootstrap` report; None when none answers."""
    try:
        metadata = admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException:
        return None
    return {int(b) for b in metadata.brokers}


def wait_ready(
    port: int,
    expect_ids: Collection[int],
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Until the node on `port` answers metadata listing every id in `expect_ids`.

    `alive` is asked between tries, so a JVM that exited fails at once instead of at the timeout.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise KafkaNotReady(f"the Kafka node on port {port} exited while starting")
        if not accepts(port):
            last = "port closed"
            time.sleep(0.1)
            continue
        ids = live_broker_ids(f"{HOST}:{port}", timeout=min(2.0, max(0.2, deadline - time.monotonic())))
        if ids is not None and set(expect_ids) <= ids:
            return
        last = f"metadata lists brokers {sorted(ids) if ids is not None else None}, waiting for {sorted(expect_ids)}"
        time.sleep(0.1)
    raise KafkaNotReady(f"Kafka on {HOST}:{port} not ready within {timeout}s (last: {last})")
