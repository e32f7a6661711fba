"""Kafka in a container: the image built here (no registry), host networking, every listener on 127.0.0.1.

One KRaft node through testcontainers: a record published with acks=all
comes back; `docker pause` freezes it (metadata requests fail, the fault
bit) and unpause thaws it; a graceful stop and a start of the same container
keep every acknowledged record.
"""

from __future__ import annotations

import time

import psutil
import pytest
from testcontainers.core.docker_client import DockerClient

from experiments.runtime.kafka.cluster import KafkaCluster
from experiments.runtime.kafka.docker import LABEL_APP, ensure_kafka_image, kafka_image_tag
from experiments.runtime.kafka.readiness import live_broker_ids
from tests.kafka_clients import create_topic, produce_acked, read_all
from tests.kafka_fixtures import require_kafka_or_skip

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def test_kafka_container_round_trips_pauses_and_keeps_records_across_restart() -> None:
    require_kafka_or_skip()
    started = time.monotonic()
    tag = ensure_kafka_image()
    built_in = time.monotonic() - started
    assert tag == kafka_image_tag()
    client = DockerClient()
    try:
        image = client.client.images.get(tag)
        assert image.labels.get(f"{LABEL_APP}.image") == "1"
    finally:
        client.client.close()

    with KafkaCluster(nodes=1, kind="docker") as kafka:
        node = kafka.nodes[0]
        assert node.status == "running"
        assert node.pid is not None
        listening = {c.laddr for c in psutil.Process(node.pid).net_connections("tcp") if c.status == "LISTEN"}
        assert {a.ip for a in listening} == {"127.0.0.1"}, listening
        print(f"image {tag}: ready in {built_in:.1f}s; container broker started in {kafka.started_in_s:.1f}s")

        bootstrap = kafka.bootstrap_servers
        topic = create_topic(bootstrap, replicas=1)
        produce_acked(bootstrap, topic, [b"before-1", b"before-2"])

        kafka.pause()
        try:
            assert node.status == "paused"
            assert live_broker_ids(bootstrap, timeout=2.0) is None  # frozen: nothing answers
        finally:
            kafka.resume()
        assert live_broker_ids(bootstrap, timeout=10.0) == {1}

        kafka.stop()
        assert node.status == "exited"
        assert node.pid is None
        kafka.start()  # the same container, the same data dir
        produce_acked(bootstrap, topic, [b"after"])
        values = [m.value() for m in read_all(bootstrap, topic, expect=3)]
        assert values == [b"before-1", b"before-2", b"after"]
