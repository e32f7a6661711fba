"""Ingest's adaptive batcher: coalesces under load, answers every caller with its own ids."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from services.batcher import ForwardBatcher, split_answer
from services.errors import ApiError


class FakeProcessor:
    """The post coroutine the batcher calls, with a delay: the batching logic under test is HTTP-free.

    The real ingest -> processor hop is exercised in test_services_e2e.py.
    """

    def __init__(self, delay: float = 0.02, status: int = 202) -> None:
        self.calls: list[int] = []
        self.headers: list[dict[str, str]] = []
        self.delay = delay
        self.status = status

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        msgs = orjson.loads(body)
        self.headers.append(headers)
        self.calls.append(len(msgs))
        await asyncio.sleep(self.delay)
        if self.status != 202:
            return self.status, b'{"error": "queue full"}'
        ids = [m["id"] for m in msgs]
        dups = [i for i, x in enumerate(ids) if x.startswith("dup-")]
        answer = {"ids": ids, "count": len(ids), "duplicates": len(dups), "duplicate_positions": dups}
        return 202, orjson.dumps(answer)


def items(prefix: str, n: int) -> list[dict[str, object]]:
    return [{"id": f"{prefix}{i}", "source": "s", "payload": i} for i in range(n)]


async def test_a_lone_request_goes_out_at_once_and_alone() -> None:
    proc = FakeProcessor()
    b = ForwardBatcher(proc.post, max_in_flight=2, max_messages=100, max_bytes=10_000)
    status, answer = await b.submit(items("a", 3), 100)
    assert status == 202
    assert orjson.loads(answer)["ids"] == ["a0", "a1", "a2"]
    assert proc.calls == [3]


async def test_concurrent_callers_share_calls_and_get_their_own_ids() -> None:
    proc = FakeProcessor()
    b = ForwardBatcher(proc.post, max_in_flight=2, max_messages=100, max_bytes=100_000)
    answers = await asyncio.gather(*(b.submit(items(f"c{k}-", 2) + items("dup-", 0), 50) for k in range(20)))
    assert len(proc.calls) < 20  # coalesced while the first calls were open
    assert sum(proc.calls) == 40
    for k, (status, answer) in enumerate(answers):
        assert status == 202
        assert orjson.loads(answer)["ids"] == [f"c{k}-0", f"c{k}-1"]


async def test_limits_split_batches() -> None:
    proc = FakeProcessor()
    b = ForwardBatcher(proc.post, max_in_flight=1, max_messages=5, max_bytes=100_000)
    await asyncio.gather(*(b.submit(items(f"l{k}-", 2), 10) for k in range(6)))
    assert max(proc.calls) <= 5
    assert sum(proc.calls) == 12


async def test_errors_reach_every_caller_of_the_batch() -> None:
    proc = FakeProcessor(status=429)
    b = ForwardBatcher(proc.post, max_in_flight=1, max_messages=100, max_bytes=100_000)
    answers = await asyncio.gather(*(b.submit(items(f"e{k}-", 1), 10) for k in range(4)))
    assert {status for status, _ in answers} == {429}

    async def broken(body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        raise ConnectionError("processor gone")

    b2 = ForwardBatcher(broken, max_in_flight=1, max_messages=100, max_bytes=100_000)
    with pytest.raises(ConnectionError):
        await b2.submit(items("x", 1), 10)


async def test_each_callers_tag_and_count_make_the_batch_headers() -> None:
    proc = FakeProcessor()

    def headers(tags: list[tuple[object, int]]) -> dict[str, str]:
        return {"X-Tags": ",".join(f"{tag}*{n}" for tag, n in tags)}

    b = ForwardBatcher(proc.post, max_in_flight=1, max_messages=100, max_bytes=100_000, headers=headers)
    await asyncio.gather(*(b.submit(items(f"t{k}-", k + 1), 10, tag=f"t{k}") for k in range(3)))
    assert proc.calls == [1, 5]  # the first alone, the two that came meanwhile together
    assert proc.headers == [{"X-Tags": "t0*1"}, {"X-Tags": "t1*2,t2*3"}]


def test_split_answer_keeps_duplicates_per_caller() -> None:
    answer = orjson.dumps(
        {"ids": ["a", "dup-b", "c", "dup-d"], "count": 4, "duplicates": 2, "duplicate_positions": [1, 3]}
    )
    first, second = (orjson.loads(p) for p in split_answer(202, answer, [2, 2]))
    assert first == {"ids": ["a", "dup-b"], "count": 2, "duplicates": 1, "duplicate_positions": [1]}
    assert second == {"ids": ["c", "dup-d"], "count": 2, "duplicates": 1, "duplicate_positions": [1]}


async def test_a_message_that_cannot_be_encoded_fails_only_its_own_caller() -> None:
    """One caller's message nested past orjson's encoder limit: that caller gets a 422, the others their 202."""
    proc = FakeProcessor()
    b = ForwardBatcher(proc.post, max_in_flight=1, max_messages=100, max_bytes=100_000)
    deep: object = "x"
    for _ in range(300):
        deep = [deep]
    bad = [{"id": "bad-0", "source": "s", "payload": deep}]
    first = asyncio.create_task(b.submit(items("first-", 1), 10))  # takes the one slot: the rest queue up
    await asyncio.sleep(0)
    rest = [asyncio.create_task(b.submit(m, 10)) for m in (items("a-", 2), bad, items("b-", 1))]
    answers = await asyncio.gather(first, *rest, return_exceptions=True)
    good = [a for a in answers if not isinstance(a, BaseException)]
    assert [orjson.loads(body)["ids"] for _, body in good] == [["first-0"], ["a-0", "a-1"], ["b-0"]]
    assert {status for status, _ in good} == {202}
    failure = answers[2]
    assert isinstance(failure, ApiError), failure
    assert failure.status == 422
    assert proc.calls == [1, 3]  # the second call carried both good callers, coalesced, without the bad one
