"""Kafka's own ProducerPerformance and ConsumerPerformance, run from the cached kafka-tools jar against the
session's broker, and their summaries parsed: the anchor `diplom bench-backends` sets beside our Kafka backend."""

from __future__ import annotations

import pytest

from experiments.bench.kafka_perf import consumer_performance, producer_performance
from experiments.runtime.kafka.cluster import KafkaCluster
from tests.kafka_clients import create_topic, read_all

pytestmark = pytest.mark.timeout(240)


def test_perf_tools_publish_and_consume_what_they_report(kafka_broker: KafkaCluster) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = create_topic(bootstrap, replicas=1)
    produced = producer_performance(bootstrap, topic, records=2000, record_size=100)
    assert produced.records == 2000
    assert produced.records_per_s > 0
    assert 0 <= produced.p50_ms <= produced.p99_ms <= produced.max_ms
    # what the tool says it sent is on the broker
    assert len(read_all(bootstrap, topic, expect=2000)) == 2000

    consumed = consumer_performance(bootstrap, topic, records=2000, timeout=60)
    assert consumed.records == 2000
    assert consumed.mb > 0.19  # 2000 x 100 bytes = 0.19 MiB
    assert consumed.records_per_s > 0
