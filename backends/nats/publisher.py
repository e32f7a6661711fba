"""Publishing to the stream: every publish waits for its PubAck, and one retry loop serves one message or a batch.

An attempt that times out or finds no stream leader (an election, a frozen
or dead leader) is sent again with the same `Nats-Msg-Id` until
`publish_timeout` is spent, so a message is stored once at most; then
`BackendUnavailable`. A full stream is back-pressure (`QueueFull`), never retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from backends.contract import BackendUnavailable, Message, PublishAck, QueueFull
from backends.nats import wire
from backends.nats.config import MSG_ID_HEADER
from backends.nats.connection import Connection

# JetStream API error codes that mean "the stream is at its limits".
_FULL_ERR_CODES = {10047, 10077}
# Between two attempts of a publish that met an election (or a frozen leader).
RETRY_PAUSE = 0.05
# On a cluster one attempt waits at most this share of publish_timeout, so a publish
# sent to a leader that froze or died is retried (same id) once a new one is elected.
ATTEMPT_SHARE = 0.25
_NO_RESPONDERS = "503"  # the status the server answers when no stream listens on the subject

# One attempt: given the seconds left, None when done, else what went wrong.
Attempt = Callable[[float], Awaitable[BaseException | None]]


@dataclass(slots=True)
class _Round:
    """The answers to one batch attempt, by index in the batch: (seq, duplicate) or the error."""

    left: int
    done: asyncio.Future[None]
    results: dict[int, tuple[int, bool] | BaseException] = field(default_factory=dict)


def _api_error(answer: dict[str, object]) -> nats.js.errors.APIError | None:
    api = answer.get("error")
    if not api or not isinstance(api, dict):
        return None
    return nats.js.errors.APIError(
        code=api.get("code"), err_code=api.get("err_code"), description=api.get("description")
    )


class Publisher:
    """`publish` and `publish_many` on one connection, with their counters."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.config = conn.config
        # PubAcks of publish_many: one subscription, replies <prefix><round>.<index>.
        self._puback_sub: Subscription | None = None
        self._puback_prefix = ""
        self._rounds: dict[str, _Round] = {}
        self._round_seq = 0
        self.enqueued = 0
        self.duplicates = 0
        self.retries = 0  # attempts sent again (same id) after a timeout or a missing leader

    async def open(self) -> None:
        """Subscribe to this backend's PubAck inbox (kept across reconnects by nats-py)."""
        nc = self._conn.require_nc()
        prefix = nc.new_inbox() + "."
        self._puback_sub = await nc.subscribe(prefix + ">", cb=self._on_puback)
        self._puback_prefix = prefix

    def close(self) -> None:
        self._puback_sub = None
        self._puback_prefix = ""

    async def publish(self, message: Message) -> PublishAck:
        """A JetStream publish: the request waits for the PubAck.

        `nc.request` plus orjson rather than `js.publish`: the same protocol,
        without building nats-py's PubAck dataclass by reflection per message
        (a measurable share of the processor's CPU at full rate).
        """
        data, headers = message.to_json(), {MSG_ID_HEADER: message.id}
        done: list[PublishAck] = []

        async def attempt(remaining: float) -> BaseException | None:
            nc = self._conn.require_nc()
            try:
                reply = await nc.request(
                    self.config.subject, data, timeout=self._attempt_timeout(remaining), headers=headers
                )
            except nats.errors.NoRespondersError:
                return nats.js.errors.NoStreamResponseError()
            except (nats.errors.Error, TimeoutError) as exc:
                return exc
            answer = orjson.loads(reply.data)
            error = _api_error(answer)
            if error is not None:
                return error
            done.append(self._counted(message.id, int(answer["seq"]), bool(answer.get("duplicate", False))))
            return None

        await self._until_stored(attempt, lambda: f"message {message.id}")
        return done[0]

    async def publish_many(self, messages: list[Message]) -> list[PublishAck]:
        """Pipelined: one protocol write per attempt; raises if any message is not confirmed.

        Each message gets its own PubAck, so dedup answers per id and a
        retried batch is stored once. (Atomic JetStream batches were measured
        here too: no faster in the full stack, and a batch holding one known
        id is refused whole.) Messages not confirmed are sent again, same ids,
        until `publish_timeout` is spent (a leader election); then the error.
        On error some messages may be stored; retrying the same batch is safe
        and is what callers should do.
        """
        if not messages:
            return []
        acks: dict[int, PublishAck] = {}
        pending = list(range(len(messages)))

        async def attempt(remaining: float) -> BaseException | None:
            nonlocal pending
            failure = await self._round(messages, pending, acks, remaining)
            pending = [i for i in pending if i not in acks]
            return failure

        await self._until_stored(attempt, lambda: f"batch ({len(acks)}/{len(messages)} confirmed)")
        return [acks[i] for i in range(len(messages))]

    async def _until_stored(self, attempt: Attempt, what: Callable[[], str]) -> None:
        """The one retry loop: attempts until one succeeds, the stream is full, or `publish_timeout` is spent."""
        conn = self._conn
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.publish_timeout
        await conn.ready(deadline - loop.time())
        while True:
            failure = await attempt(deadline - loop.time())
            if failure is None:
                return
            error = self.error(failure, what())
            if isinstance(error, QueueFull):
                raise error from failure
            if loop.time() + RETRY_PAUSE >= deadline:
                conn.leave_server_without_leader()
                raise error from failure
            self.retries += 1
            await asyncio.sleep(RETRY_PAUSE)
            # Not while reconnecting: nats-py would buffer the retry and send it
            # after a reconnect, long after this call answered 503.
            await conn.ready(deadline - loop.time())

    def error(self, exc: BaseException, what: str) -> Exception:
        """What a failed publish means for the caller: `QueueFull` (429) or `BackendUnavailable` (503)."""
        if isinstance(exc, nats.js.errors.APIError):
            if exc.err_code in _FULL_ERR_CODES or "maximum" in (exc.description or ""):
                return QueueFull(f"JetStream stream {self.config.stream} is full: {exc.description}")
            return BackendUnavailable(f"JetStream refused {what}: {exc.description} (code {exc.err_code})")
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            self._conn.stream_may_be_gone()
            return BackendUnavailable(f"no JetStream stream answers on {self.config.subject}")
        if isinstance(exc, TimeoutError):
            return BackendUnavailable(f"no PubAck from NATS within {self.config.publish_timeout}s for {what}")
        return BackendUnavailable(f"publishing {what} to NATS failed: {exc!r}")

    def _attempt_timeout(self, remaining: float) -> float:
        """All that is left on one server with an R1 stream (there is no other leader to find); a share on a cluster.

        A short attempt against a single slow server only turns a late PubAck
        into "duplicate message id is in process" and a 503 for a stored message.
        """
        if not self.config.clustered:
            return max(0.01, remaining)
        return max(0.01, min(remaining, max(0.2, self.config.publish_timeout * ATTEMPT_SHARE)))

    def _counted(self, message_id: str, seq: int, duplicate: bool) -> PublishAck:
        if duplicate:
            self.duplicates += 1
        else:
            self.enqueued += 1
        return PublishAck(message_id, seq, duplicate)

    async def _round(
        self,
        messages: list[Message],
        pending: list[int],
        acks: dict[int, PublishAck],
        remaining: float,
    ) -> BaseException | None:
        """One attempt for `pending`: confirmed ones go into `acks`; returns a failure (a full stream first), if any.

        The attempt is one write of joined HPUB commands (`wire.hpub`), each
        with its `Nats-Msg-Id` and a reply subject `<inbox>.<round>.<index>`
        under the one subscription this publisher owns; `_on_puback` files
        each answer and resolves the round's one future when all are in.
        Answers to a round that has ended (timed out) find no round and are
        dropped. It also files JetStream's error replies: nats-py 2.16's
        `publish_async` leaves such a future pending (nats-io/nats.py#985,
        `APIError.from_error` raises), which turned a full stream into a 503
        after `publish_timeout`, not a 429.
        """
        nc = self._conn.nc
        if nc is None or self._puback_prefix == "":
            return nats.errors.ConnectionClosedError()
        if not nc.is_connected:
            # nats-py would buffer the write and send it after a reconnect, long after we answered.
            return nats.errors.ConnectionReconnectingError()
        self._round_seq += 1
        key = str(self._round_seq)
        reply = f"{self._puback_prefix}{key}."
        limit = wire.max_payload(nc)
        parts: list[bytes] = []
        for i in pending:
            m = messages[i]
            data = m.to_json()
            if len(data) > limit:
                return nats.errors.MaxPayloadError()
            parts.append(wire.hpub(self.config.subject, f"{reply}{i}", m.id, data))
        answers = _Round(len(pending), asyncio.get_running_loop().create_future())
        self._rounds[key] = answers
        failure: BaseException | None = None
        try:
            async with asyncio.timeout(self._attempt_timeout(remaining) + len(pending) * 0.001):
                await wire.write(nc, b"".join(parts))
                await answers.done
        except (nats.errors.Error, TimeoutError) as exc:
            failure = exc
        finally:
            del self._rounds[key]
        results = answers.results
        for i in pending:
            r = results.get(i)
            if r is None:
                failure = failure or TimeoutError()
            elif isinstance(r, BaseException):
                # a full stream wins: it is back-pressure (429), not something to retry
                if failure is None or isinstance(self.error(r, ""), QueueFull):
                    failure = r
            else:
                acks[i] = self._counted(messages[i].id, r[0], r[1])
        return failure

    async def _on_puback(self, msg: Msg) -> None:
        """A PubAck (or error, or "no responders" status) for one message of a `_round`."""
        key, _, index = msg.subject[len(self._puback_prefix) :].partition(".")
        answers = self._rounds.get(key)
        if answers is None:
            return  # its round ended: timed out, retried under a new round
        i = int(index)
        if i in answers.results:
            return
        result: tuple[int, bool] | BaseException
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            result = nats.js.errors.NoStreamResponseError()
        else:
            try:
                answer = orjson.loads(msg.data)
                api = _api_error(answer)
                result = api if api is not None else (int(answer["seq"]), bool(answer.get("duplicate", False)))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                result = nats.errors.Error(f"unreadable PubAck: {exc!r}")
        answers.results[i] = result
        answers.left -= 1
        if answers.left <= 0 and not answers.done.done():
            answers.done.set_result(None)
