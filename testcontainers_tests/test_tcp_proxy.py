"""The fault proxy itself does what its modes promise, against a tiny echo server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from experiments.runtime.tcp_proxy import TcpProxy

pytestmark = pytest.mark.faults


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass  # the proxy reset us: that is the point
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 3)


async def connect_and_echo(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await roundtrip(reader, writer, b"x")
    finally:
        writer.close()


async def test_modes_pass_delay_drop_reset_switch_at_run_time(echo_port: int) -> None:
    with TcpProxy(echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await roundtrip(reader, writer, b"hello") == b"hello"

        proxy.set_mode("delay", delay=0.3)
        started = time.monotonic()
        assert await roundtrip(reader, writer, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.6  # 0.3 s each way

        proxy.set_mode("drop")
        writer.write(b"lost")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(10), 0.5)
        proxy.set_mode("pass")
        assert await roundtrip(reader, writer, b"back") == b"back"  # the same connection lives on
        assert proxy.bytes_dropped >= 4

        proxy.set_mode("reset")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(10), 2)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await connect_and_echo(proxy.port)  # reset during or right after connect
        writer.close()

        proxy.set_mode("pass")
        r3, w3 = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await roundtrip(r3, w3, b"healed") == b"healed"
        w3.close()
    assert proxy.resets_sent >= 2
    with pytest.raises(ValueError, match="mode must be"):
        proxy.set_mode("flaky")  # type: ignore[arg-type]
