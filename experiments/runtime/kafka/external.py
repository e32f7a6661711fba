"""A Kafka the user runs (`HARNESS_KAFKA=external`, `KAFKA_BROKERS=host:port,...`): read, never faulted.

The harness did not start it, so it will not stop, kill or pause it: those
verbs raise `NotOurBroker`, naming what to run instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from experiments.runtime.kafka.readiness import KafkaNotReady, live_broker_ids
from experiments.runtime.lifetime import Managed


class NotOurBroker(RuntimeError):
    """A fault or lifecycle verb on a broker this harness did not start."""


class ExternalKafka(Managed):
    kind = "external"
    pid = None

    def __init__(self, bootstrap_servers: str, ready_timeout: float = 10.0) -> None:
        if not bootstrap_servers.strip():
            raise ValueError("HARNESS_KAFKA=external needs KAFKA_BROKERS (host:port, comma-separated)")
        self.bootstrap_servers = bootstrap_servers.strip()
        self.ready_timeout = ready_timeout
        self.store_dir = Path(tempfile.gettempdir())  # nothing of it is on this host

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ExternalKafka:
        return cls(environ.get("KAFKA_BROKERS", ""))

    @property
    def size(self) -> int:
        return len(self.bootstrap_servers.split(","))

    def start(self) -> None:
        """Only check that it answers metadata."""
        if live_broker_ids(self.bootstrap_servers, timeout=self.ready_timeout) is None:
            raise KafkaNotReady(f"external Kafka at {self.bootstrap_servers} does not answer metadata")

    def _refuse(self, verb: str) -> NotOurBroker:
        return NotOurBroker(
            f"cannot {verb} an external Kafka ({self.bootstrap_servers}): the harness did not start it; "
            "use HARNESS_KAFKA=process or docker for fault experiments"
        )

    def stop(self, timeout: float = 15.0) -> None:
        raise self._refuse("stop")

    def kill(self) -> None:
        raise self._refuse("kill")

    def restart(self, hard: bool = False) -> None:
        raise self._refuse("restart")

    def pause(self) -> None:
        raise self._refuse("pause")

    def resume(self) -> None:
        raise self._refuse("resume")

    def close(self) -> None:
        """Nothing to release."""
