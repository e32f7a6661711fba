"""A loopback TCP proxy whose behaviour is switched at run time: a network fault between two of our processes.

Modes, for every connection through it (open ones and new ones):
- `pass`:  bytes flow both ways;
- `delay`: each chunk is forwarded `delay` s after it arrived, order kept
  (a slow or congested link);
- `drop`:  a blackhole: connections are accepted, bytes are read and thrown
  away both ways, nothing is answered (a partition the endpoints cannot see);
- `reset`: every open connection is cut with a TCP RST (SO_LINGER 0) and new
  ones are reset at once (a partition that a firewall rejects).

It runs its own asyncio loop in a daemon thread, so a test's load and the
proxy never share a loop; `set_mode` is safe from any thread. 127.0.0.1 only.
`close()` stops it and every connection; it is also a context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Literal

Mode = Literal["pass", "delay", "drop", "reset"]
MODES: tuple[Mode, ...] = ("pass", "delay", "drop", "reset")


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: SO_LINGER on with a zero timeout, then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """127.0.0.1:`port` -> 127.0.0.1:`target_port`, with a switchable fault mode."""

    def __init__(self, target_port: int, *, mode: Mode = "pass", delay: float = 0.0) -> None:
        self.target_port = target_port
        self.port = 0
        self.mode: Mode = mode
        self.delay = delay
        self.connections_seen = 0
        self.resets_sent = 0
        self.bytes_dropped = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)

    @property
    def url_host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=5)
        return self

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def set_mode(self, mode: Mode, delay: float | None = None) -> None:
        """Switch every connection, open or new, to `mode` (thread-safe; applied before it returns)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")

        async def switch() -> None:
            if delay is not None:
                self.delay = delay
            self.mode = mode
            if mode == "reset":
                for client, upstream in list(self._pairs):
                    _rst(client)
                    _rst(upstream)
                    self.resets_sent += 1
                self._pairs.clear()

        asyncio.run_coroutine_threadsafe(switch(), self._loop).result(timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_seen += 1
        if self.mode == "reset":
            self.resets_sent += 1
            _rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _rst(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        """One direction: a reader stamps each chunk with its due time, a writer sends it then (FIFO)."""
        due_chunks: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def write() -> None:
            while (item := await due_chunks.get()) is not None:
                due, chunk = item
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if self.mode in ("drop", "reset"):  # switched while the chunk waited
                    self.bytes_dropped += len(chunk)
                    continue
                dst.write(chunk)
                await dst.drain()

        writer = asyncio.create_task(write())
        try:
            while chunk := await src.read(65536):
                if self.mode == "drop":
                    self.bytes_dropped += len(chunk)
                    continue
                lag = self.delay if self.mode == "delay" else 0.0
                due_chunks.put_nowait((time.monotonic() + lag, chunk))
                if writer.done():
                    break
            due_chunks.put_nowait(None)
            await writer
        except (ConnectionError, OSError):
            pass
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await writer
            self._pairs.discard(pair)
            for w in pair:
                w.transport.abort()

    def close(self) -> None:
        """Stop listening, cut every connection, stop the loop and its thread."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for client, upstream in list(self._pairs):
                client.transport.abort()
                upstream.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
