"""One broker's own view of a partition (leader, in-sync replicas), asked of that broker alone.

A librdkafka client (confluent-kafka's AdminClient) sends a metadata request
to whichever broker it is connected to, not the one it was bootstrapped
with: it also connects to the broker the metadata names controller (in
KRaft, any broker). When one node is cut off from its peers but still
reachable by clients (a partition), its metadata is stale (it still names
itself leader with the old ISR), and an answer may come from it or from the
majority, at random. To tell the views apart, this asks one broker over one
TCP connection with Kafka's own protocol: a Metadata request, version 4
(non-flexible encoding, in every broker since 1.0 and still in 4.x).
"""

from __future__ import annotations

import socket
import struct

METADATA_KEY = 3
METADATA_VERSION = 4
CLIENT_ID = b"queue-lab-view"


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        text = self.data[self.at : self.at + n].decode()
        self.at += n
        return text

    def ints(self) -> list[int]:
        return [self.take(">i") for _ in range(self.take(">i"))]


def _request(topic: str, correlation: int) -> bytes:
    name = topic.encode()
    header = struct.pack(">hhih", METADATA_KEY, METADATA_VERSION, correlation, len(CLIENT_ID)) + CLIENT_ID
    body = struct.pack(">ih", 1, len(name)) + name + b"\x00"  # one topic; allow_auto_topic_creation false
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _receive(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def partition_view(host: str, port: int, topic: str, partition: int = 0, timeout: float = 1.0) -> tuple[int, list[int]]:
    """(leader id, sorted ISR ids) of `topic`[`partition`] as the broker at host:port sees it.

    Raises OSError when it does not answer, LookupError when it does not know the topic or partition.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_request(topic, 1))
        size = struct.unpack(">i", _receive(sock, 4))[0]
        r = _Reader(_receive(sock, size))
    r.take(">i")  # correlation id
    r.take(">i")  # throttle_time_ms
    for _ in range(r.take(">i")):  # brokers: node_id, host, port, rack
        r.take(">i")
        r.string()
        r.take(">i")
        r.string()
    r.string()  # cluster_id
    r.take(">i")  # controller_id
    for _ in range(r.take(">i")):  # topics
        error, name = r.take(">h"), r.string()
        r.take(">b")  # is_internal
        found: tuple[int, list[int]] | None = None
        for _ in range(r.take(">i")):  # partitions
            r.take(">h")  # the partition's error (LEADER_NOT_AVAILABLE: leader -1)
            index, leader = r.take(">i"), r.take(">i")
            r.ints()  # replicas
            isr = r.ints()
            if index == partition:
                found = (leader, sorted(isr))
        if name == topic and error == 0 and found is not None:
            return found
    raise LookupError(f"the broker at {host}:{port} knows no {topic}[{partition}]")
