"""One broker's own view of a partition (leader, in-sync replicas), asked of that broker alone.

A librdkafka client (confluent-kafka's AdminClient) sends a metadata request
to whichever broker it is connected to, not the one it was bootstrapped
with: it also connects to the broker the metadata names controller (in
KRaft, any broker). When one node is cut off from its peers but still
reachable by clients (a partition), its metadata is stale (it still names
itself leader with the old ISR), and an answer may come from it or from the
majority, at random. To tell the views apart, this asks one broker over one
connection of its own: aiokafka's connection and protocol classes (a
dependency already, for the client comparison), which send a request to the
broker they connected to and nowhere else, in the highest Metadata version
both sides speak.
"""

from __future__ import annotations

import asyncio

from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest

CLIENT_ID = "queue-lab-view"


async def _ask(host: str, port: int, topic: str, timeout: float) -> object:
    conn = await create_conn(host, port, client_id=CLIENT_ID, request_timeout_ms=int(timeout * 1000))
    try:
        return await conn.send(MetadataRequest(topics=[topic], allow_auto_topic_creation=False))
    finally:
        conn.close()


def partition_view(host: str, port: int, topic: str, partition: int = 0, timeout: float = 1.0) -> tuple[int, list[int]]:
    """(leader id, sorted ISR ids) of `topic`[`partition`] as the broker at host:port sees it.

    Raises OSError when it does not answer in `timeout`, LookupError when it does not know the topic or partition.
    """
    try:
        answer = asyncio.run(asyncio.wait_for(_ask(host, port, topic, timeout), timeout))
    except Exception as exc:  # a timeout, aiokafka's KafkaConnectionError and the like: no answer from it
        raise OSError(f"the broker at {host}:{port} did not answer: {exc!r}") from exc
    for error, name, _internal, partitions in answer.topics:  # type: ignore[attr-defined]
        if name != topic or error != 0:
            continue
        for found in partitions:  # (error, index, leader, replicas, isr, ...) in every version
            if found[1] == partition:
                return int(found[2]), sorted(int(r) for r in found[4])
    raise LookupError(f"the broker at {host}:{port} knows no {topic}[{partition}]")
