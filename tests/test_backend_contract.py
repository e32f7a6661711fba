"""The backend contract, one base class subclassed per target (memory, NATS process; NATS container elsewhere).

`testcontainers_tests/test_contract_docker.py` subclasses `NatsContract` where
its conftest makes `nats_server` a container, so the same assertions hold there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, ClassVar

import pytest

from backends.contract import (
    AlreadySettled,
    BackendMisconfigured,
    BackendUnavailable,
    Delivery,
    Message,
    QueueBackend,
    QueueFull,
)
from backends.factory import create_backend, load_settings
from tests.backend_fixtures import Capabilities, MakeBackend, eventually, settles_to


def msg(i: int | str, payload: Any = None) -> Message:
    return Message(id=f"m-{i}", source="contract-test", payload=payload if payload is not None else {"n": i})


async def drain(backend: QueueBackend, want: int, batch: int = 10, timeout: float = 5.0) -> list[Delivery]:
    """Fetch until `want` deliveries arrived or `timeout` passed."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got.extend(await backend.fetch(min(batch, want - len(got)), timeout=0.5))
    return got


class BackendContract:
    """What every `QueueBackend` promises; a subclass per target names the backend (`kind`).

    Not collected itself (no `Test` prefix): `TestMemoryBackend`, `TestProcessNats` below and
    `testcontainers_tests.test_contract_docker.TestDockerNats` run it against their target.
    """

    kind: ClassVar[str]

    @pytest.fixture
    def backend_kind(self) -> str:
        return self.kind

    async def test_fifo_for_one_producer(self, make_backend: MakeBackend) -> None:
        b = await make_backend()
        for i in range(20):
            await b.publish(msg(i))
        await b.publish_many([msg(i) for i in range(20, 60)])
        got = await drain(b, 60, batch=7)
        assert [d.message.id for d in got] == [f"m-{i}" for i in range(60)]
        assert all(d.delivery_count == 1 for d in got)
        assert got[5].message.payload == {"n": 5}
        for d in got:
            await d.ack()
        await settles_to(b, 0)

    async def test_message_fields_survive_the_queue(self, make_backend: MakeBackend) -> None:
        b = await make_backend()
        sent = Message(
            id="full",
            source="src",
            payload={"nested": [1, 2.5, None, True, "ü"], "deep": {"a": {"b": []}}},
            created_at=1_700_000_000_123_456_789,
            attributes={"k": "v"},
        )
        await b.publish(sent)
        (d,) = await drain(b, 1)
        assert d.message == sent
        await d.ack()

    async def test_ack_removes_for_good(self, make_backend: MakeBackend) -> None:
        b = await make_backend(ack_wait=0.5)
        await b.publish_many([msg(i) for i in range(3)])
        for d in await drain(b, 3):
            await d.ack()
        await asyncio.sleep(0.8)  # past ack_wait: an acked message must not come back
        assert await b.fetch(10, timeout=0.3) == []
        await settles_to(b, 0)
        s = await b.stats()
        assert (s.acked, s.total_dequeued) == (3, 3)

    async def test_settling_twice_is_refused(self, make_backend: MakeBackend) -> None:
        b = await make_backend()
        await b.publish(msg(1))
        (d,) = await drain(b, 1)
        await d.ack()
        with pytest.raises(AlreadySettled):
            await d.ack()
        with pytest.raises(AlreadySettled):
            await d.nak()

    async def test_ack_many_acks_the_batch_for_good(self, make_backend: MakeBackend) -> None:
        b = await make_backend(ack_wait=0.5)
        await b.publish_many([msg(i) for i in range(5)])
        got = await drain(b, 5)
        await b.ack_many(got)
        await b.ack_many([])
        with pytest.raises(AlreadySettled):
            await b.ack_many(got[:1])
        await asyncio.sleep(0.8)  # past ack_wait: an acked message must not come back
        assert await b.fetch(10, timeout=0.3) == []
        await settles_to(b, 0)
        assert (await b.stats()).acked == 5

    async def test_stamps_and_the_store_time_come_with_the_delivery(self, make_backend: MakeBackend) -> None:
        b = await make_backend()
        sent = Message(id="stamped", source="s", payload=1, stamps={"gateway": 1, "processor": 2})
        before = time.time_ns()
        await b.publish(sent)
        after = time.time_ns()
        (d,) = await drain(b, 1)
        assert d.message.stamps == {"gateway": 1, "processor": 2}
        # stored on the same clock, between the publish call and its return (a ms of slack for the broker)
        assert before - 1_000_000 <= d.stored_at <= after + 1_000_000
        await d.ack()

    async def test_nak_redelivers(self, make_backend: MakeBackend) -> None:
        b = await make_backend()
        await b.publish(msg(1))
        (first,) = await drain(b, 1)
        await first.nak()
        (second,) = await drain(b, 1)
        assert second.message.id == "m-1"
        assert (first.delivery_count, second.delivery_count) == (1, 2)
        await second.ack()
        await settles_to(b, 0)
        s = await b.stats()
        assert (s.naked, s.redelivered, s.acked) == (1, 1, 1)

    async def test_nak_with_delay_waits_before_redelivery(self, make_backend: MakeBackend) -> None:
        b = await make_backend()
        await b.publish(msg(1))
        (d,) = await drain(b, 1)
        started = time.monotonic()
        await d.nak(delay=0.6)
        assert await b.fetch(1, timeout=0.3) == []
        (again,) = await drain(b, 1, timeout=3.0)
        assert again.message.id == "m-1"
        assert time.monotonic() - started >= 0.5
        await again.ack()

    async def test_unacked_delivery_comes_back_after_ack_wait(self, make_backend: MakeBackend) -> None:
        b = await make_backend(ack_wait=0.5)
        await b.publish(msg(1))
        (d,) = await drain(b, 1)  # a worker that died mid-message: never settles
        assert await b.fetch(1, timeout=0.2) == []
        (again,) = await drain(b, 1, timeout=3.0)
        assert again.message.id == d.message.id
        assert again.delivery_count == 2
        await again.ack()
        await settles_to(b, 0)

    async def test_in_progress_holds_the_delivery(self, make_backend: MakeBackend) -> None:
        b = await make_backend(ack_wait=1.0)
        await b.publish(msg(1))
        (d,) = await drain(b, 1)
        for _ in range(4):  # 1.6 s of work, longer than ack_wait, with progress signals
            await asyncio.sleep(0.4)
            await d.in_progress()
        assert await b.fetch(1, timeout=0.1) == []
        await d.ack()
        await asyncio.sleep(1.2)
        assert await b.fetch(1, timeout=0.2) == []

    async def test_max_deliver_exhausted_is_not_redelivered(self, make_backend: MakeBackend) -> None:
        b = await make_backend(max_deliver=2, ack_wait=0.5)
        await b.publish(msg("poison"))
        (d1,) = await drain(b, 1)
        await d1.nak()
        (d2,) = await drain(b, 1)
        assert d2.delivery_count == 2
        await d2.nak()
        await asyncio.sleep(0.7)  # past ack_wait too
        assert await b.fetch(1, timeout=0.5) == []

        async def parked() -> bool:
            s = await b.stats()
            return (s.exhausted, s.dead_lettered) == (1, 1)

        await eventually(parked)  # neither lost nor stuck: in the dead-letter place
        await settles_to(b, 0)

    async def test_dead_letter_parks_and_settles(self, make_backend: MakeBackend) -> None:
        b = await make_backend(ack_wait=0.5)
        await b.publish_many([msg("bad"), msg("good")])
        bad, good = await drain(b, 2)
        await b.dead_letter(bad, "payload rejected")
        await good.ack()
        with pytest.raises(AlreadySettled):
            await bad.ack()
        await asyncio.sleep(0.7)
        assert await b.fetch(1, timeout=0.3) == []
        await settles_to(b, 0)
        s = await b.stats()
        assert (s.dead_lettered, s.acked, s.exhausted) == (1, 1, 0)

    async def test_term_drops_the_message(self, make_backend: MakeBackend) -> None:
        b = await make_backend(ack_wait=0.5)
        await b.publish(msg(1))
        (d,) = await drain(b, 1)
        await d.term()
        await asyncio.sleep(0.7)
        assert await b.fetch(1, timeout=0.3) == []
        await settles_to(b, 0)
        assert (await b.stats()).termed == 1

    async def test_stats_are_exact_after_a_known_sequence(
        self, make_backend: MakeBackend, capabilities: Capabilities
    ) -> None:
        b = await make_backend()
        await b.publish_many([msg(i) for i in range(8)])
        await b.publish(msg(8))
        dup = await b.publish(msg(3))  # a retry of a stored id
        assert dup.duplicate is capabilities.dedup_by_id
        copies = 0 if capabilities.dedup_by_id else 1  # without dedup by id the retry is stored again
        got = await b.fetch(5, timeout=1.0)
        assert len(got) == 5
        await got[0].ack()
        await got[1].ack()
        await got[2].nak()
        await got[3].term()
        # got[4] stays in flight
        await settles_to(b, 9 + copies - 2 - 1)  # 4 never fetched (+ the copy) + 1 naked + 1 in flight
        s = await b.stats()
        assert s.total_enqueued == 9 + copies
        assert s.duplicates == 1 - copies
        assert s.total_dequeued == 5
        assert (s.acked, s.naked, s.termed) == (2, 1, 1)
        await got[4].ack()
        rest = await drain(b, 5 + copies)
        assert sorted(d.message.id for d in rest) == sorted(["m-2", "m-5", "m-6", "m-7", "m-8"] + ["m-3"] * copies)
        for d in rest:
            await d.ack()
        await settles_to(b, 0)
        s = await b.stats()
        assert (s.total_dequeued, s.acked, s.redelivered) == (10 + copies, 8 + copies, 1)

    async def test_republishing_the_same_id(self, make_backend: MakeBackend, capabilities: Capabilities) -> None:
        """Deduplicated by the broker (`dedup_by_id`), or stored once per publish: never lost, never merged."""
        b = await make_backend()
        first = await b.publish(msg("x"))
        again = await b.publish(msg("x", payload="retry"))
        assert not first.duplicate
        batch = await b.publish_many([msg("x"), msg("y"), msg("y")])
        got = await drain(b, 6, timeout=1.5)
        s = await b.stats()
        if capabilities.dedup_by_id:
            assert again.duplicate
            assert again.sequence == first.sequence
            assert [a.duplicate for a in batch] == [True, False, True]
            assert sorted(d.message.id for d in got) == ["m-x", "m-y"]
            assert got[0].message.payload == {"n": "x"}  # the first stored copy wins
            assert (s.total_enqueued, s.duplicates) == (2, 3)
        else:
            assert not again.duplicate
            assert again.sequence > first.sequence
            assert [a.duplicate for a in batch] == [False, False, False]
            assert [d.message.id for d in got] == ["m-x", "m-x", "m-x", "m-y", "m-y"]
            assert [d.message.payload for d in got[:2]] == [{"n": "x"}, "retry"]  # each copy as sent
            assert (s.total_enqueued, s.duplicates) == (5, 0)

    async def test_publish_many_empty_and_order(self, make_backend: MakeBackend) -> None:
        b = await make_backend()
        assert await b.publish_many([]) == []
        acks = await b.publish_many([msg(i) for i in range(500)])
        assert [a.message_id for a in acks] == [f"m-{i}" for i in range(500)]
        seqs = [a.sequence for a in acks]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 500
        await settles_to(b, 500)

    async def test_fetch_waits_for_a_message_and_returns_on_arrival(self, make_backend: MakeBackend) -> None:
        b = await make_backend()
        started = time.monotonic()
        assert await b.fetch(10, timeout=0.3) == []
        assert 0.25 <= time.monotonic() - started < 2.0

        async def later() -> None:
            await asyncio.sleep(0.2)
            await b.publish(msg(1))

        task = asyncio.create_task(later())
        started = time.monotonic()
        got = await b.fetch(10, timeout=5.0)
        waited = time.monotonic() - started
        await task
        assert [d.message.id for d in got] == ["m-1"]
        assert waited < 1.0  # returned on arrival, not after the 5 s budget or a full batch
        await got[0].ack()

    async def test_close_leaves_no_running_tasks(self, make_backend: MakeBackend, backend_kind: str) -> None:
        before = asyncio.all_tasks()
        b = await make_backend(ack_wait=0.5)
        await b.publish_many([msg(i) for i in range(5)])
        for d in await drain(b, 3):
            await d.nak(delay=5.0)  # leaves timers/pending redeliveries behind
        await b.close()
        await asyncio.sleep(0.05)
        left = {t for t in asyncio.all_tasks() - before if not t.done()}
        assert left == set(), f"{backend_kind} backend left tasks: {left}"

    async def test_dedup_forgets_ids_after_the_window(
        self, make_backend: MakeBackend, capabilities: Capabilities
    ) -> None:
        b = await make_backend(dedup_window=1.0, ack_wait=0.4)
        first = await b.publish(msg("w"))
        assert (await b.publish(msg("w"))).duplicate is capabilities.dedup_by_id
        await asyncio.sleep(1.8)
        later = await b.publish(msg("w"))  # outside the window: a new message
        assert not later.duplicate
        assert later.sequence > first.sequence
        copies = 2 if capabilities.dedup_by_id else 3
        got = await drain(b, copies)
        assert [d.message.id for d in got] == ["m-w"] * copies

    async def test_late_ack_still_completes_the_message(self, make_backend: MakeBackend) -> None:
        """An ack after ack_wait counts (as in JetStream): the message is done."""
        b = await make_backend(ack_wait=0.4)
        await b.publish_many([msg("queued"), msg("refetched")])
        first = await drain(b, 2)
        await asyncio.sleep(0.7)  # both outlive ack_wait and are due again
        (again,) = await drain(b, 1)  # one is redelivered, the other waits
        late = next(d for d in first if d.message.id == again.message.id)
        other = next(d for d in first if d.message.id != again.message.id)
        await late.ack()  # completes the message a newer delivery holds
        await other.ack()  # completes the message waiting for redelivery
        await again.ack()  # harmless: already complete
        await asyncio.sleep(0.6)
        assert await b.fetch(5, timeout=0.3) == []
        await settles_to(b, 0)

    async def test_retried_batch(self, make_backend: MakeBackend, capabilities: Capabilities) -> None:
        """A whole request retried after a lost answer: stored once (`dedup_by_id`), else twice and in order."""
        b = await make_backend()
        batch = [msg(f"r{i}") for i in range(5)]
        first = await b.publish_many(batch)
        again = await b.publish_many(batch)
        assert [a.duplicate for a in first] == [False] * 5
        copies = 1 if capabilities.dedup_by_id else 2
        got = await drain(b, 5 * copies + 1, timeout=1.5)
        assert sorted(d.message.id for d in got) == sorted(m.id for m in batch * copies)
        s = await b.stats()
        if capabilities.dedup_by_id:
            assert [a.duplicate for a in again] == [True] * 5
            assert [a.sequence for a in again] == [a.sequence for a in first]
            assert (s.total_enqueued, s.duplicates) == (5, 5)
        else:
            assert [a.duplicate for a in again] == [False] * 5
            assert min(a.sequence for a in again) > max(a.sequence for a in first)
            assert (s.total_enqueued, s.duplicates) == (10, 0)


class NatsContract(BackendContract):
    """The contract plus what only a NATS server can show: restarts, reconnects, freezes, the server's policy."""

    kind = "nats"

    @pytest.mark.parametrize("hard", [False, True], ids=["graceful", "sigkill"])
    async def test_messages_survive_a_nats_restart(
        self, make_backend: MakeBackend, nats_server: Any, hard: bool
    ) -> None:
        producer = await make_backend()
        await producer.publish_many([msg(i) for i in range(300)])
        await producer.publish(msg(300))
        await producer.close()
        nats_server.restart(hard=hard)
        consumer = await make_backend()
        got = await drain(consumer, 301, batch=100)
        assert sorted(d.message.id for d in got) == sorted(f"m-{i}" for i in range(301))
        for d in got:
            await d.ack()
        await settles_to(consumer, 0)

    async def test_backend_reconnects_by_itself(self, make_backend: MakeBackend, nats_server: Any) -> None:
        b = await make_backend(publish_timeout=0.5, nats_reconnect_wait=0.1)
        await b.publish(msg("before"))
        nats_server.stop()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await b.publish(msg("while-down"))
        assert time.monotonic() - started < 2.0  # bounded, no hang
        with pytest.raises(BackendUnavailable):
            await b.fetch(1, timeout=0.3)
        assert not (await b.stats()).connected
        nats_server.start()

        async def accepts() -> bool:
            try:
                await b.publish(msg("after"))
            except BackendUnavailable:
                return False
            return True

        await eventually(accepts, timeout=10.0, every=0.2)
        got = await drain(b, 2)
        assert sorted(d.message.id for d in got) == ["m-after", "m-before"]
        s = await b.stats()
        assert s.connected
        assert s.current_size == 2

    async def test_publish_to_a_frozen_broker_fails_in_bounded_time(
        self, make_backend: MakeBackend, nats_server: Any
    ) -> None:
        b = await make_backend(publish_timeout=0.5)
        nats_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match="PubAck"):
                await b.publish(msg("frozen"))
            assert time.monotonic() - started < 1.5
        finally:
            nats_server.resume()
        retry = await b.publish(msg("frozen"))  # the retry of a maybe-stored message
        got = await drain(b, 2, timeout=1.5)
        assert [d.message.id for d in got] == ["m-frozen"]  # stored once either way
        assert retry.sequence == 1

    async def test_stats_while_the_broker_is_frozen_leave_the_connection_usable(
        self, make_backend: MakeBackend, nats_server: Any
    ) -> None:
        """Found by the durability notebook: a stats() call that timed out during a SIGSTOP left a
        cancelled PING future in nats-py, whose late PONG then killed the client's read loop for good."""
        b = await make_backend(publish_timeout=0.5)
        await b.publish(msg("before"))
        nats_server.pause()
        try:
            for _ in range(3):
                with contextlib.suppress(BackendUnavailable, TimeoutError):
                    await asyncio.wait_for(b.stats(), 2.0)
        finally:
            nats_server.resume()
        await b.publish(msg("after"))  # raises if the client died
        got = await drain(b, 2, timeout=3.0)
        assert sorted(d.message.id for d in got) == ["m-after", "m-before"]
        for d in got:
            await d.ack()
        await settles_to(b, 0)

    async def test_unreadable_message_on_the_subject_is_terminated(
        self, make_backend: MakeBackend, nats_server: Any
    ) -> None:
        import nats

        b = await make_backend()
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().publish("diplom.messages", b"not json")
        finally:
            await nc.close()
        await b.publish(msg(1))
        got = await drain(b, 1)
        assert [d.message.id for d in got] == ["m-1"]
        await got[0].ack()
        await settles_to(b, 0)
        assert (await b.stats()).termed == 1

    async def test_sync_always_is_verified_on_the_server(self, make_backend: MakeBackend) -> None:
        with pytest.raises(BackendMisconfigured, match="sync_interval: always"):
            await make_backend(nats_sync_always=True)

    async def test_close_hands_back_pulled_but_undelivered_messages(self, make_backend: MakeBackend) -> None:
        """What sat in the pull buffer at close goes to the next consumer now, not after ack_wait."""
        first = await make_backend(nats_pull_expires=5.0)
        await first.publish_many([msg("a"), msg("b")])
        taken = await first.fetch(5, timeout=5.0)  # a pull for 5 stays open after these 2
        assert [d.message.id for d in taken] == ["m-a", "m-b"]
        for d in taken:
            await d.ack()
        await first.publish_many([msg(i) for i in range(3)])
        await asyncio.sleep(0.3)  # delivered into the first backend's buffer, never fetched
        await first.close()
        second = await make_backend()  # ack_wait is 30 s: only a nak makes this quick
        got = await drain(second, 3, timeout=3.0)
        assert sorted(d.message.id for d in got) == ["m-0", "m-1", "m-2"]

    async def test_publish_many_stores_each_message_with_its_id_header(
        self, make_backend: MakeBackend, nats_server: Any
    ) -> None:
        """What a batch puts in the stream, read back by plain nats-py: the body and the dedup header per message."""
        import nats

        b = await make_backend()
        batch = [msg(f"h{i}", {"n": i, "text": "é\r\n"}) for i in range(3)]
        acks = await b.publish_many(batch)
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            stored = [await js.get_msg("DIPLOM_STREAM", a.sequence) for a in acks]
        finally:
            await nc.close()
        assert [s.headers for s in stored] == [{"Nats-Msg-Id": m.id} for m in batch]
        assert [s.data for s in stored] == [m.to_json() for m in batch]

    async def test_publish_many_to_a_full_stream_raises_queue_full_at_once(self, make_backend: MakeBackend) -> None:
        """max_msgs, discard-new: the stored part gets PubAcks, the rest an error reply -> QueueFull, not retried."""
        b = await make_backend(nats_max_msgs=5, publish_timeout=2.0)
        started = time.monotonic()
        with pytest.raises(QueueFull, match="full"):
            await b.publish_many([msg(i) for i in range(8)])
        assert time.monotonic() - started < 1.0  # back-pressure is answered at once, never retried to the timeout
        s = await b.stats()
        assert (s.current_size, s.total_enqueued) == (5, 5)
        got = await drain(b, 5)
        assert len({d.message.id for d in got}) == 5
        for d in got:
            await d.ack()
        await settles_to(b, 0)
        again = await b.publish_many([msg(i) for i in range(8)])  # the caller's retry of the whole batch
        assert sum(a.duplicate for a in again) == 5  # the stored five are known ids (dedup window)
        assert (await b.stats()).current_size == 3

    async def test_publish_many_recreates_a_deleted_stream(self, make_backend: MakeBackend, nats_server: Any) -> None:
        """No-responders status (no stream on the subject): the topology is made again and the retry stores."""
        import nats

        b = await make_backend(publish_timeout=3.0)
        await b.publish_many([msg("old")])
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().delete_stream("DIPLOM_STREAM")
        finally:
            await nc.close()
        started = time.monotonic()
        acks = await b.publish_many([msg(i) for i in range(4)])
        assert time.monotonic() - started < 1.5  # answered "no responders", not left to the 3 s timeout
        assert getattr(b, "publish_retries", None) == 1
        assert [a.sequence for a in acks] == [1, 2, 3, 4]
        got = await drain(b, 4)
        assert sorted(d.message.id for d in got) == [f"m-{i}" for i in range(4)]

    async def test_publish_many_while_the_broker_is_down_is_refused_and_never_sent_later(
        self, make_backend: MakeBackend, nats_server: Any
    ) -> None:
        """A batch refused (503) while reconnecting must not sit in a buffer and be stored after the reconnect."""
        b = await make_backend(publish_timeout=0.5, nats_reconnect_wait=0.1)
        await b.publish_many([msg("before")])
        nats_server.stop()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await b.publish_many([msg(f"down{i}") for i in range(3)])
        assert time.monotonic() - started < 2.0
        nats_server.start()
        await eventually(lambda: _connected(b), timeout=10.0, every=0.1)
        await b.publish_many([msg("after")])
        await asyncio.sleep(0.3)
        got = await drain(b, 5, timeout=1.5)
        assert sorted(d.message.id for d in got) == ["m-after", "m-before"]

    async def test_publish_many_to_a_frozen_broker_fails_in_bounded_time_and_the_retry_stores_once(
        self, make_backend: MakeBackend, nats_server: Any
    ) -> None:
        b = await make_backend(publish_timeout=0.5)
        batch = [msg(f"f{i}") for i in range(20)]
        nats_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match="PubAck"):
                await b.publish_many(batch)
            assert time.monotonic() - started < 1.5
        finally:
            nats_server.resume()
        retry = await b.publish_many(batch)  # the caller's retry; late PubAcks of the frozen round are dropped
        assert [a.sequence for a in retry] == list(range(1, 21))
        got = await drain(b, 21, batch=50, timeout=1.5)
        assert sorted(d.message.id for d in got) == sorted(m.id for m in batch)  # stored once either way


async def _connected(b: QueueBackend) -> bool:
    return (await b.stats()).connected


class TestMemoryBackend(BackendContract):
    """The contract on the in-memory queue, plus its bound (QUEUE_SIZE)."""

    kind = "memory"

    async def test_full_memory_queue_raises_queue_full(self, make_backend: MakeBackend) -> None:
        b = await make_backend(queue_size=5, publish_timeout=0.3)
        await b.publish_many([msg(i) for i in range(5)])
        started = time.monotonic()
        with pytest.raises(QueueFull, match="QUEUE_SIZE"):
            await b.publish(msg(5))
        assert 0.25 <= time.monotonic() - started < 1.5  # waited the bounded time, no longer
        with pytest.raises(QueueFull):
            await b.publish_many([msg(10), msg(11)])
        with pytest.raises(QueueFull, match="exceeds the queue capacity"):
            await b.publish_many([msg(i) for i in range(100, 106)])
        s = await b.stats()
        assert (s.current_size, s.total_enqueued) == (5, 5)  # nothing of the refused batches stored

    async def test_full_memory_queue_accepts_when_space_frees_in_time(self, make_backend: MakeBackend) -> None:
        b = await make_backend(queue_size=2, publish_timeout=2.0)
        await b.publish_many([msg(1), msg(2)])

        async def consume_one() -> None:
            await asyncio.sleep(0.2)
            (d,) = await b.fetch(1, timeout=1.0)
            await d.ack()

        task = asyncio.create_task(consume_one())
        ack = await b.publish(msg(3))
        await task
        assert not ack.duplicate
        assert (await b.stats()).current_size == 2


@pytest.mark.spawns
class TestKafkaBackend(BackendContract):
    """The contract on a KRaft broker process (the session's `kafka_broker`), each test on its own topic,
    plus what only Kafka shows: the record in the topic, the depth from the broker, the prefix commit."""

    kind = "kafka"

    async def test_records_carry_the_id_as_key_and_header_and_parked_ones_their_reason(
        self, make_backend: MakeBackend, kafka_broker: Any
    ) -> None:
        from confluent_kafka import Consumer, TopicPartition

        b = await make_backend(max_deliver=1)
        batch = [msg(f"k{i}", {"n": i, "text": "é\r\n"}) for i in range(3)]
        acks = await b.publish_many(batch)
        (first, *_) = await drain(b, 1)
        await first.nak()  # max_deliver=1: parked at once
        topic = b.config.topic  # type: ignore[attr-defined]
        reader = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": "reader"})
        try:
            reader.assign([TopicPartition(topic, 0, 0), TopicPartition(topic + ".dlq", 0, 0)])
            records: list[Any] = []
            deadline = time.monotonic() + 10
            while len(records) < 4 and time.monotonic() < deadline:
                records.extend(m for m in reader.consume(10, 0.5) if m.error() is None)
        finally:
            reader.close()
        stored = [r for r in records if r.topic() == topic]
        assert [r.offset() for r in stored] == [a.sequence for a in acks]
        assert [(r.key(), r.value()) for r in stored] == [(m.id.encode(), m.to_json()) for m in batch]
        assert [r.headers() for r in stored] == [[("message-id", m.id.encode())] for m in batch]
        (parked,) = [r for r in records if r.topic() == topic + ".dlq"]
        assert parked.key() == b"m-k0"
        assert dict(parked.headers())["dead-letter-reason"] == b"max_deliver (1) exhausted"

    async def test_a_member_is_joined_once_the_group_assigned_it_and_a_second_one_gets_nothing(
        self, make_backend: MakeBackend
    ) -> None:
        """What a processor's readiness waits for: the first fetch joins; until the group answers, joined is
        false. On a one-partition topic the second member joins with an empty assignment."""
        first, second = await make_backend(), await make_backend()
        assert not (await first.stats()).joined  # never fetched: not a member
        await first.fetch(1, timeout=0.1)
        await eventually(lambda: _joined(first), timeout=15)
        await second.fetch(1, timeout=0.1)
        await eventually(lambda: _joined(second), timeout=15)
        owned = [(await b.stats()).cluster["consumer"]["partitions"] for b in (first, second)]  # type: ignore[index]
        assert sorted(owned) == [[], [0]]

    async def test_depth_is_read_from_the_broker_in_a_process_that_only_publishes(
        self, make_backend: MakeBackend
    ) -> None:
        publisher, consumer = await make_backend(), await make_backend()
        await publisher.publish_many([msg(i) for i in range(6)])
        got = await drain(consumer, 6)
        await got[0].ack()
        await got[1].ack()
        await settles_to(consumer, 4)
        await settles_to(publisher, 4)  # the group's committed offset, as another process sees it
        for d in got[2:]:
            await d.ack()
        await settles_to(publisher, 0)
        assert (await publisher.stats()).acked == 0  # its figure is the broker's, not its own counters

    async def test_the_next_consumer_gets_what_was_not_settled_from_the_first_gap_on(
        self, make_backend: MakeBackend
    ) -> None:
        """The committed offset is the contiguous settled prefix: m-0, m-1 are done for good; m-3 was acked
        after the unsettled m-2, so it comes again (at-least-once), with a delivery count restarted at 1."""
        first = await make_backend()
        await first.publish_many([msg(i) for i in range(5)])
        got = await drain(first, 5)
        for i in (0, 1, 3):
            await got[i].ack()
        await first.close()
        second = await make_backend()
        again = await drain(second, 3, timeout=10.0)
        assert [d.message.id for d in again] == ["m-2", "m-3", "m-4"]
        assert [d.delivery_count for d in again] == [1, 1, 1]
        assert await second.fetch(5, timeout=0.5) == []

    async def test_an_unreadable_record_is_terminated(self, make_backend: MakeBackend, kafka_broker: Any) -> None:
        from confluent_kafka import Producer

        b = await make_backend()
        raw = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
        raw.produce(b.config.topic, b"not json")  # type: ignore[attr-defined]
        assert raw.flush(10) == 0
        await b.publish(msg(1))
        got = await drain(b, 1)
        assert [d.message.id for d in got] == ["m-1"]
        await got[0].ack()
        await settles_to(b, 0)
        assert (await b.stats()).termed == 1

    async def test_a_frozen_broker_fails_publish_in_bounded_time_and_the_backend_recovers(
        self, make_backend: MakeBackend, kafka_broker: Any
    ) -> None:
        b = await make_backend(publish_timeout=1.0)
        await b.publish(msg("before"))
        kafka_broker.pause()
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await b.publish(msg("frozen"))
            with pytest.raises(BackendUnavailable):
                await b.publish_many([msg("frozen-batch")])
            assert time.monotonic() - started < 3.0  # two publishes of a 1 s bound each, no hang
            assert not (await b.stats()).connected
        finally:
            kafka_broker.resume()
        await b.publish(msg("after"))  # raises if the producer did not recover
        # until "after" comes (the frozen ones may never): a consumer back from a frozen broker re-fetches its
        # partitions first, which took over 3 s on a loaded CI machine
        ids: list[str] = []
        deadline = time.monotonic() + 20.0
        while "m-after" not in ids and time.monotonic() < deadline:
            ids.extend(d.message.id for d in await b.fetch(5, timeout=0.5))
        assert ids[0] == "m-before"
        assert "m-after" in ids  # the frozen ones may or may not be stored (BackendUnavailable's contract)
        assert set(ids) <= {"m-before", "m-frozen", "m-frozen-batch", "m-after"}
        assert (await b.stats()).connected


@pytest.mark.spawns
class TestProcessNats(NatsContract):
    """The contract on a `nats-server` process (this directory's `nats_server` fixture)."""


async def test_first_connect_to_absent_nats_fails_fast() -> None:
    from experiments.runtime.ports import free_port

    before = asyncio.all_tasks()
    backend = create_backend(
        load_settings(queue_type="nats", nats_url=f"nats://127.0.0.1:{free_port()}", nats_connect_timeout=1.0)
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        await backend.connect()
    assert time.monotonic() - started < 3.0
    await asyncio.sleep(0.05)
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()
    with pytest.raises(BackendUnavailable):
        await backend.publish(msg(1))


async def test_first_connect_to_absent_kafka_fails_fast() -> None:
    from experiments.runtime.ports import free_port

    before = asyncio.all_tasks()
    backend = create_backend(
        load_settings(queue_type="kafka", kafka_brokers=f"127.0.0.1:{free_port()}", kafka_connect_timeout=1.0)
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        await backend.connect()
    assert time.monotonic() - started < 3.0
    await asyncio.sleep(0.05)
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()
    with pytest.raises(BackendUnavailable):
        await backend.publish(msg(1))


@pytest.mark.spawns
async def test_sync_always_accepted_by_a_syncing_server(tmp_path: Any) -> None:
    from experiments.runtime.nats.process import ProcessNats

    with ProcessNats(tmp_path / "sync", sync_always=True) as server:
        backend = create_backend(
            load_settings(
                queue_type="nats", nats_url=server.url, nats_monitor_url=server.monitor_url, nats_sync_always=True
            )
        )
        await backend.connect()
        try:
            await backend.publish(msg(1))
            assert (await backend.stats()).current_size == 1
        finally:
            await backend.close()


async def _joined(backend: QueueBackend) -> bool:
    return (await backend.stats()).joined
