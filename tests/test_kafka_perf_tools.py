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


def test_warm_up_records_go_first_and_the_figures_are_the_steady_state_after_them(
    kafka_broker: KafkaCluster,
) -> None:
    """The anchor's figure leaves out the JVM's start: 1,000 warm-up records are stored too, and the
    summary read is the tool's steady-state line over the 2,000 after them."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = create_topic(bootstrap, replicas=1)
    produced = producer_performance(bootstrap, topic, records=2000, record_size=100, warmup=1000)
    assert produced.records == 2000  # the steady-state line, not the 3,000 of the whole run
    assert len(read_all(bootstrap, topic, expect=3000)) == 3000
