"""The queue backend contract: one small async protocol and the values it moves.

Every backend (memory, NATS JetStream) implements `QueueBackend` and hands out
`Delivery` objects. The services depend on this module only, so switching
`QUEUE_TYPE` never changes a line of service code.

Delivery semantics are at-least-once for both backends: a delivery stays owned
by the consumer until it is acked, nak'ed or termed; if none of that happens
within `ack_wait` it is delivered again, up to `max_deliver` times in total.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

import orjson

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


def payload_digest(payload: JsonValue) -> str:
    """What end-to-end integrity compares: BLAKE2b-128 of the payload's canonical JSON (orjson's encoding).

    Stamped once, at the first hop that parses the client's body, and again
    by the worker on what it processed; the two differ only if the payload
    was changed on the way. (The services refuse what orjson would change
    when parsing, so the canonical form holds the client's value exactly.)
    """
    return hashlib.blake2b(orjson.dumps(payload), digest_size=16).hexdigest()


class QueueError(Exception):
    """Base class of every error a backend raises on purpose."""


class QueueFull(QueueError):
    """The backend would not accept the message within the publish timeout.

    Raised instead of dropping: the caller decides (HTTP 429/503, retry).
    """


class BackendUnavailable(QueueError):
    """The backend cannot be reached or did not confirm storage in bounded time.

    A message for which this is raised may or may not be stored; re-publishing
    it with the same id is safe because both backends deduplicate by id.
    """


class BackendMisconfigured(QueueError):
    """The broker does not offer what the settings require (e.g. fsync always)."""


class AlreadySettled(QueueError):
    """ack/nak/term was called on a delivery that was already settled."""


@dataclass(frozen=True, slots=True)
class Message:
    """One unit of work.

    `created_at` is nanoseconds since the Unix epoch, stamped once at ingest so
    end-to-end latency can be measured across processes without float rounding.
    `stamps` carries the other hops' times on the same clock (`time.time_ns()`),
    e.g. `gateway` and `processor` received, so the consumer's ledger row can
    say where a message's time went. `digest` is `payload_digest(payload)` as
    the first hop computed it, carried unchanged to the worker ("" if none).
    """

    id: str
    source: str
    payload: JsonValue
    created_at: int = field(default_factory=time.time_ns)
    attributes: dict[str, str] = field(default_factory=dict)
    stamps: dict[str, int] = field(default_factory=dict)
    digest: str = ""

    def to_json(self) -> bytes:
        """The wire form used by backends that store bytes."""
        return orjson.dumps(
            {
                "id": self.id,
                "source": self.source,
                "payload": self.payload,
                "created_at": self.created_at,
                "attributes": self.attributes,
                "stamps": self.stamps,
                **({"digest": self.digest} if self.digest else {}),
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Message:
        """Inverse of `to_json`; raises `ValueError` on anything else."""
        try:
            raw = orjson.loads(data)
            return cls(
                id=raw["id"],
                source=raw["source"],
                payload=raw["payload"],
                created_at=raw["created_at"],
                attributes=raw.get("attributes") or {},
                stamps=raw.get("stamps") or {},
                digest=raw.get("digest") or "",
            )
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a queue message: {exc}") from exc


class PublishAck(NamedTuple):
    """Proof that the backend stored a message.

    `duplicate` is true when the id was already stored inside the dedup window:
    the message is stored once, and the caller may still answer success.
    (A NamedTuple: built once per message on the hot path, and cheap to build.)
    """

    message_id: str
    sequence: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counters of one backend instance, plus the real depth of the queue.

    `total_enqueued` and `total_dequeued` count what this process published
    (duplicates excluded) and fetched (redeliveries included).
    `current_size` is what is stored and not yet acknowledged: for NATS the
    durable consumer's pending plus ack-pending, across every process.
    `dead_lettered` is what sits in the dead-letter place (NATS: the DLQ
    stream's message count; memory: messages parked since start).
    """

    backend: str
    total_enqueued: int
    total_dequeued: int
    current_size: int
    in_flight: int
    acked: int
    naked: int
    termed: int
    redelivered: int
    duplicates: int
    exhausted: int
    dead_lettered: int
    connected: bool
    # A clustered broker only: stream leader, replicas (current, lag), meta leader.
    cluster: dict[str, object] | None = None
    leader_changes: int = 0  # stream + consumer leader elections seen since connect
    # The consumer side can receive: a Kafka group member got its (maybe empty) assignment. Memory and
    # NATS deliver as soon as they are connected; a Kafka processor that has not joined yet would
    # report ready while its first messages wait for the join.
    joined: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "total_enqueued": self.total_enqueued,
            "total_dequeued": self.total_dequeued,
            "current_size": self.current_size,
            "in_flight": self.in_flight,
            "acked": self.acked,
            "naked": self.naked,
            "termed": self.termed,
            "redelivered": self.redelivered,
            "duplicates": self.duplicates,
            "exhausted": self.exhausted,
            "dead_lettered": self.dead_lettered,
            "connected": self.connected,
            "cluster": self.cluster,
            "leader_changes": self.leader_changes,
            "joined": self.joined,
        }


@runtime_checkable
class Delivery(Protocol):
    """One delivery of a message to a consumer; settle it exactly once."""

    @property
    def message(self) -> Message: ...

    @property
    def delivery_count(self) -> int:
        """1 on first delivery, 2 on the first redelivery, and so on."""
        ...

    @property
    def stored_at(self) -> int:
        """When the backend stored the message, ns since the epoch (JetStream: the stream's own timestamp)."""
        ...

    async def ack(self) -> None:
        """Processing finished: remove the message for good."""

    async def nak(self, delay: float | None = None) -> None:
        """Processing failed: deliver again, after `delay` seconds if given."""

    async def term(self) -> None:
        """Never deliver again (poison message); the message is dropped."""

    async def in_progress(self) -> None:
        """Still working: restart the ack_wait clock for this delivery."""


@runtime_checkable
class QueueBackend(Protocol):
    """What a service needs of a queue; nothing about HTTP or the broker leaks."""

    name: str

    async def connect(self) -> None:
        """Open connections and create what must exist; bounded in time."""

    async def publish(self, message: Message) -> PublishAck:
        """Store one message durably before returning; never drop silently."""
        ...

    async def publish_many(self, messages: list[Message]) -> list[PublishAck]:
        """Store several, pipelined; returns only when every one is stored."""
        ...

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        """Up to `batch` deliveries; waits at most `timeout` s for the first."""
        ...

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """`ack()` each of this backend's deliveries, at once (NATS: one write); AlreadySettled as `ack()`."""

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Park a message that will not succeed, then settle its delivery for good.

        Stored before the delivery is termed, so a crash in between leaves a
        redelivery (and perhaps a DLQ duplicate), never a lost message.
        """

    async def stats(self) -> QueueStats:
        """Counters and real depth; never -1."""
        ...

    async def close(self) -> None:
        """Release everything; no task of the backend runs after it returns."""
