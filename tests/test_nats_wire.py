"""The NATS package's seams: the private nats-py names it relies on, and the one background-task set.

`backends/nats/wire.py` writes batches of protocol commands through
nats-py's private `_send_command`, `_flush_pending` and `_max_payload`. A
nats-py upgrade that renames one would otherwise fail only at the first
batch under load; these tests fail at once and name what is gone. Cost:
well under a second (one nats-server process for the last test).
"""

from __future__ import annotations

import ast
import asyncio
from importlib.metadata import version
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from backends.nats import NatsConfig, NatsJetStreamBackend, wire
from experiments.runtime.nats.process import ProcessNats
from experiments.runtime.ports import free_port

PACKAGE = Path(wire.__file__).parent


def test_nats_py_still_has_every_private_name_the_wire_module_uses() -> None:
    missing = wire.missing_private_names(NatsClient())
    assert missing == [], (
        f"nats-py {version('nats-py')} no longer has {missing}: backends/nats/wire.py writes HPUB/PUB batches "
        "through them; port wire.py to the new nats-py (or pin the old one) before anything else"
    )


def test_only_the_wire_module_touches_nats_py_private_names() -> None:
    """Every other module of the package goes through `wire`; an attribute named like a private one is a leak."""
    leaks = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "wire.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in wire.PRIVATE_NAMES:
                leaks.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert leaks == []


def test_a_batch_is_written_as_nats_py_writes_one_publish_with_headers() -> None:
    """The hand-built HPUB: header block and sizes as nats-py's own `publish(headers=...)` builds them."""
    data = b'{"id":"a"}'
    command = wire.hpub("diplom.messages", "_INBOX.x.1.0", "a\r\nb", data)
    hdr = b"NATS/1.0\r\nNats-Msg-Id: a  b\r\n\r\n"
    assert command == f"HPUB diplom.messages _INBOX.x.1.0 {len(hdr)} {len(hdr) + len(data)}\r\n".encode() + hdr + (
        data + b"\r\n"
    )
    assert wire.acks(["$JS.ACK.a", "$JS.ACK.b"]) == b"PUB $JS.ACK.a 0\r\n\r\nPUB $JS.ACK.b 0\r\n\r\n"


@pytest.mark.spawns
async def test_close_cancels_a_server_switch_in_flight(tmp_path: Path) -> None:
    """A server switch (force_reconnect) runs in the backend's one task set, so close() ends it too.

    Before the split it lived in a second set that close() never cancelled.
    """
    with ProcessNats(tmp_path / "nats") as server:
        before = asyncio.all_tasks()
        backend = NatsJetStreamBackend(
            NatsConfig(url=f"{server.url},nats://127.0.0.1:{free_port()}", reconnect_wait=0.5, connect_timeout=2.0)
        )
        await backend.connect()
        backend._conn.leave_server_without_leader()  # what a publish_timeout without PubAck does on a cluster
        assert backend.server_switches == 1
        assert len(backend._conn.tasks) == 1
        await backend.close()
        await asyncio.sleep(0.05)
        left = {t for t in asyncio.all_tasks() - before if not t.done()}
        assert left == set(), f"close() left tasks: {left}"
