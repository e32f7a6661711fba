"""Hand-built protocol writes: batches of HPUB (publish) and PUB (ack) commands in one write.

The ONLY module that touches nats-py's private names. nats-py has no public
call that writes many commands at once; doing it here saves, per message,
what `publish_async`/`Msg.ack` cost (a future, a NUID, a semaphore,
re-validation, a dataclass by reflection). `PRIVATE_NAMES` lists every
private name used, and `missing_private_names` is what a test checks, so a
nats-py upgrade that renames one fails that test loudly instead of failing
at the first batch under load.
"""

from __future__ import annotations

from collections.abc import Iterable

from nats.aio.client import Client as NatsClient

from backends.nats.config import MSG_ID_HEADER

# nats-py 2.16: Client._send_command(cmd) queues bytes, Client._flush_pending() wakes the
# flusher; Client._max_payload is the server's max_payload from its INFO.
PRIVATE_NAMES = ("_send_command", "_flush_pending", "_max_payload")

# What nats-py writes for a header block with only the message id, and how it cleans a value.
_HDR_START = b"NATS/1.0\r\n" + MSG_ID_HEADER.encode() + b": "
_HDR_END = b"\r\n\r\n"
_HEADER_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})


def missing_private_names(nc: NatsClient) -> list[str]:
    """The names in `PRIVATE_NAMES` this client lacks (or has in another kind); empty while nats-py keeps them."""
    missing = [n for n in PRIVATE_NAMES if not hasattr(nc, n)]
    if not missing:
        if not callable(nc._send_command) or not callable(nc._flush_pending):
            missing += ["_send_command/_flush_pending (not callable)"]
        if not isinstance(nc._max_payload, int):
            missing += ["_max_payload (not an int)"]
    return missing


def max_payload(nc: NatsClient) -> int:
    """The largest message body the connected server takes."""
    size: int = nc._max_payload
    return size


async def write(nc: NatsClient, commands: bytes) -> None:
    """Queue protocol commands on the connection and flush them now."""
    await nc._send_command(commands)
    await nc._flush_pending()


def hpub(subject: str, reply: str, msg_id: str, data: bytes) -> bytes:
    """One HPUB with the `Nats-Msg-Id` header, as nats-py's `publish(headers=...)` would write it."""
    hdr = _HDR_START + msg_id.strip().translate(_HEADER_VALUE_NEWLINES).encode() + _HDR_END
    return b"".join((f"HPUB {subject} {reply} {len(hdr)} {len(hdr) + len(data)}\r\n".encode(), hdr, data, b"\r\n"))


def acks(replies: Iterable[str]) -> bytes:
    """Empty PUBs to each ack subject: JetStream's "+ACK" is an empty body, as `Msg.ack()` sends."""
    return b"".join(b"PUB " + r.encode() + b" 0\r\n\r\n" for r in replies)
