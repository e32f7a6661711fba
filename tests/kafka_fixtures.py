"""Kafka brokers for the tests: one node per session, three nodes per session; both real KRaft JVMs.

Without Java or the jars (and no way to fetch them): skip with the reason,
or fail when CI is set, where scripts/test.sh has run scripts/ensure-kafka.sh.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.runtime.kafka.class_archive import ensure_archive
from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.runtime.kafka.jars import KafkaUnavailable, java_binary, kafka_libs
from tests.ci import ci_is_set


def require_kafka_or_skip() -> None:
    try:
        java_binary()
        kafka_libs()
    except KafkaUnavailable as exc:
        if ci_is_set():
            pytest.fail(f"CI is set and Kafka is unavailable: {exc}")
        pytest.skip(f"Kafka unavailable: {exc}. With CI=true this is a failure.")
    ensure_archive()  # once per machine (scripts/ensure-kafka.sh does it under make): every JVM then starts faster


def _cluster(tmp: Path, nodes: int) -> Iterator[KafkaCluster]:
    require_kafka_or_skip()
    cluster = KafkaCluster(tmp, nodes=nodes)
    with cluster:
        yield cluster
    assert cluster.pid is None, "a Kafka JVM outlived its fixture"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One KRaft node (broker + controller) as a process on free loopback ports, for the whole session."""
    yield from _cluster(tmp_path_factory.mktemp("kafka1"), 1)


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three KRaft nodes, RF 3, min ISR 2, unclean election off, for the whole session.

    A test that stops or kills a node starts it again before it ends (and waits
    for the ISR to be whole), so the next test finds all three.
    """
    yield from _cluster(tmp_path_factory.mktemp("kafka3"), 3)
