"""A fuzz harness for the HTTP API, in process: hypothesis writes the bodies, byte by byte.

The generator renders JSON text itself, so it can write what no encoder
would: deep nesting, integers beyond 64 bits, numbers past a double's
digits, NaN and Infinity tokens, duplicate keys, lone surrogates, a BOM, odd
content types, and batches that mix good and bad items. Each case knows
whether its value can be stored exactly (`keep`) and, if so, the value
itself. Properties, for every case:

1. never a 5xx;
2. a 4xx stores nothing (the processor's enqueued count does not move);
3. a 2xx stores exactly what was sent: each message is processed and the
   ledger's stamped and processed digests both equal the digest of the
   value the generator meant (and a 2xx for anything that cannot be kept
   exactly is a failure);
4. one client's bad item never fails another client's call: a good request
   sent concurrently through the same gateway and ingest batcher is 202.

The real apps (gateway -> ingest -> processor, memory backend) chained by
httpx's ASGI transport on one event loop. CASES examples, derandomized (the
same cases every run): a few seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.contract import payload_digest
from backends.memory import MemoryBackend
from services import gateway, ingest, processor
from services.exact_json import MAX_JSON_DEPTH
from services.inprocess import AsgiHops, lifespans
from services.settings import BackendSettings, GatewaySettings, IngestSettings, ProcessorSettings

CASES = int(os.environ.get("FUZZ_CASES", "100"))  # FUZZ_CASES=1000 for a longer run
INGEST_URL = "http://ingest.inprocess"
PROCESSOR_URL = "http://processor.inprocess"
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/vnd.lab+json"]
ODD_TYPES = ["text/plain", "", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data"]


@dataclass(frozen=True)
class Json:
    """JSON text as written, and what it means: `keep` if orjson can store it exactly, then `value`."""

    text: str
    keep: bool
    value: Any = None


def _keepable(text: str, value: Any) -> Json:
    return Json(text, True, value)


def _refused(text: str) -> Json:
    return Json(text, False)


good_leaves = st.one_of(
    st.sampled_from([_keepable("null", None), _keepable("true", True), _keepable("false", False)]),
    st.integers(-(2**63), 2**64 - 1).map(lambda i: _keepable(str(i), i)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: _keepable(repr(f), f)),
    st.text(max_size=20).map(lambda s: _keepable(orjson.dumps(s).decode(), s)),
    st.integers(1, 100).map(lambda n: _keepable("[" * n + "1" + "]" * n, _nested(n))),
)
BAD_LEAVES = {
    "huge int": st.one_of(st.integers(min_value=2**64), st.integers(max_value=-(2**63) - 1)).map(
        lambda i: _refused(str(i))
    ),
    "odd number": st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "1e-400", "0.1000000000000000000001"]).map(
        _refused
    ),
    "not JSON": st.sampled_from(["01", "+1", "'a'", "[1,]", '{"a" 1}']).map(_refused),
    "lone surrogate": st.sampled_from(['"\\ud800"', '"\\udc00x"', '"\\ud83d"']).map(_refused),
    "deep": st.integers(MAX_JSON_DEPTH, 1100).map(lambda n: _refused("[" * n + "1" + "]" * n)),
}
bad_leaves = st.one_of(*BAD_LEAVES.values())


def _nested(n: int) -> Any:
    value: Any = 1
    for _ in range(n):
        value = [value]
    return value


def _list(children: list[Json]) -> Json:
    text = "[" + ",".join(c.text for c in children) + "]"
    if all(c.keep for c in children):
        return _keepable(text, [c.value for c in children])
    return _refused(text)


def _object(pairs: list[tuple[str, Json]]) -> Json:
    text = "{" + ",".join(f"{orjson.dumps(k).decode()}: {v.text}" for k, v in pairs) + "}"
    keys = [k for k, _ in pairs]
    if len(set(keys)) == len(keys) and all(v.keep for _, v in pairs):
        return _keepable(text, {k: v.value for k, v in pairs})
    return _refused(text)  # a duplicate key, or a value that cannot be kept


KEYS = st.sampled_from(["a", "b", "", "é", "\u0000"])
good_payloads = st.recursive(
    good_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(_list),
        st.lists(st.tuples(KEYS, children), max_size=4, unique_by=lambda kv: kv[0]).map(_object),
    ),
    max_leaves=8,
)
bad_payloads = st.one_of(
    bad_leaves,
    st.tuples(st.lists(good_payloads, max_size=3), bad_leaves, st.integers(0, 3)).map(
        lambda t: _list([*t[0][: t[2]], t[1], *t[0][t[2] :]])  # a bad value somewhere in a list
    ),
    st.tuples(KEYS, good_payloads, good_payloads).map(lambda t: _object([(t[0], t[1]), ("x", t[1]), (t[0], t[2])])),
)


@dataclass(frozen=True)
class Item:
    text: str
    good: bool
    payload: Any = None


_ids = itertools.count()


def _item(payload: Json) -> Item:
    return Item(f'{{"source": "fuzz", "payload": {payload.text}, "id": "f{next(_ids)}"}}', payload.keep, payload.value)


good_items = good_payloads.map(_item)
bad_payload_items = bad_payloads.map(_item)
bad_shape_items = st.tuples(
    good_payloads, st.sampled_from(["no source", "extra field", "bad id", "not an object"])
).map(
    lambda t: Item(
        {
            "no source": f'{{"payload": {t[0].text}}}',
            "extra field": f'{{"source": "fuzz", "payload": {t[0].text}, "x": 1}}',
            "bad id": f'{{"source": "fuzz", "payload": {t[0].text}, "id": "has space"}}',
            "not an object": t[0].text,
        }[t[1]],
        False,
    )
)


@dataclass(frozen=True)
class Case:
    kind: str
    body: bytes
    content_type: str
    items: list[Item]

    @property
    def good(self) -> bool:
        return self.kind == "good"


@st.composite
def cases(draw: st.DrawFn) -> Case:
    kinds = ["good", "bad payload", *BAD_LEAVES, "too deep", "mixed batch", "bad shape", "odd content type", "BOM"]
    kind = draw(st.sampled_from(kinds))
    if kind == "mixed batch":
        batch = [*draw(st.lists(good_items, min_size=1, max_size=3)), draw(bad_payload_items | bad_shape_items)]
        batch = draw(st.permutations(batch))
    elif kind == "bad payload":
        batch = [draw(bad_payload_items)]
    elif kind in BAD_LEAVES:  # that kind of bad value somewhere in an otherwise good payload
        around, bad, at = draw(st.lists(good_payloads, max_size=3)), draw(BAD_LEAVES[kind]), draw(st.integers(0, 3))
        batch = [_item(_list([*around[:at], bad, *around[at:]]))]
    elif kind == "too deep":  # between orjson's encoder limit and its parser's, and past both
        n = draw(st.sampled_from([MAX_JSON_DEPTH, 253, 254, 300, 1023, 1100]))
        batch = [_item(_refused("[" * n + "1" + "]" * n))]
    elif kind == "bad shape":
        batch = [draw(bad_shape_items)]
    else:
        batch = draw(st.lists(good_items, min_size=1, max_size=4))
    single = len(batch) == 1 and draw(st.booleans())
    text = batch[0].text if single else "[" + ",".join(i.text for i in batch) + "]"
    body = text.encode("utf-8", "surrogatepass")
    if kind == "BOM":
        body = b"\xef\xbb\xbf" + body
    content_type = draw(st.sampled_from(ODD_TYPES if kind == "odd content type" else JSON_TYPES))
    return Case(kind, body, content_type, batch)


@dataclass
class Chain:
    loop: asyncio.AbstractEventLoop
    gateway: httpx.AsyncClient
    processor: httpx.AsyncClient
    ledger: Path

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    ledger = tmp_path_factory.mktemp("fuzz") / "ledger.sqlite"
    proc_app = processor.create_app(
        ProcessorSettings(workers=2, ledger_path=str(ledger)),
        backend=MemoryBackend(),
        backend_settings=BackendSettings(),
    )
    ingest_app = ingest.create_app(
        IngestSettings(processor_url=PROCESSOR_URL), downstream=AsgiHops({PROCESSOR_URL: proc_app})
    )
    gateway_app = gateway.create_app(
        GatewaySettings(ingest_url=INGEST_URL, processor_url=PROCESSOR_URL),
        downstream=AsgiHops({INGEST_URL: ingest_app, PROCESSOR_URL: proc_app}),
    )
    loop = asyncio.new_event_loop()
    running = lifespans(proc_app, ingest_app, gateway_app)
    loop.run_until_complete(running.__aenter__())

    def client(app: Any, name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}.inprocess")

    c = Chain(loop, client(gateway_app, "gateway"), client(proc_app, "processor"), ledger)
    try:
        yield c
    finally:
        loop.run_until_complete(c.gateway.aclose())
        loop.run_until_complete(c.processor.aclose())
        loop.run_until_complete(running.__aexit__(None, None, None))
        loop.close()


async def _enqueued(chain: Chain) -> int:
    return int((await chain.processor.get("/stats")).json()["queue"]["total_enqueued"])


async def _digests_once_processed(chain: Chain, ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """(stamped, processed) digest per id, once every id has a processed row."""
    import sqlite3

    for _ in range(400):
        with sqlite3.connect(f"file:{chain.ledger}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT id, payload_digest, processed_digest FROM deliveries WHERE outcome = 'processed'"
            ).fetchall()
        found = {r[0]: (r[1], r[2]) for r in rows if r[0] in ids}
        if len(found) == len(ids):
            return found
        await asyncio.sleep(0.005)
    raise AssertionError(f"not processed: {set(ids) - set(found)}")


async def _one(chain: Chain, case: Case) -> None:
    before = await _enqueued(chain)
    control_id = f"control-{next(_ids)}"
    fuzzed, control = await asyncio.gather(
        chain.gateway.post("/api/v1/ingest", content=case.body, headers={"Content-Type": case.content_type}),
        chain.gateway.post("/api/v1/ingest", json={"source": "control", "payload": 1, "id": control_id}),
    )
    assert fuzzed.status_code < 500, (fuzzed.status_code, fuzzed.text, case)
    assert control.status_code == 202, ("another client's call failed", control.text, case)
    assert fuzzed.headers["content-type"].startswith("application/json"), case
    if fuzzed.status_code >= 400:
        assert case.good is False, ("a good body was refused", fuzzed.text, case)
        assert "error" in fuzzed.json()
        assert await _enqueued(chain) == before + 1, ("a 4xx stored something", case)  # the control only
        return
    assert case.good, ("stored what cannot be kept exactly", fuzzed.text, case)
    assert fuzzed.status_code == 202
    ids = fuzzed.json()["ids"]
    assert len(ids) == len(case.items)
    digests = await _digests_once_processed(chain, ids)
    for mid, item in zip(ids, case.items, strict=True):
        want = payload_digest(item.payload)
        assert digests[mid] == (want, want), (mid, item)


def fuzz_settings(examples: int) -> settings:
    """Repeatable (derandomized, no example database) and slow-tolerant: the same cases on every run."""
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@fuzz_settings(CASES)
@given(case=cases())
def test_fuzzed_bodies_never_5xx_and_store_exactly_what_was_sent_or_nothing(chain: Chain, case: Case) -> None:
    chain.run(_one(chain, case))


def test_the_fuzzer_writes_every_kind_of_hostile_input() -> None:
    """The generator reaches what the properties are about (else the test above proves little)."""
    seen: set[str] = set()

    @settings(max_examples=CASES, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(case=cases())
    def collect(case: Case) -> None:
        body = case.body
        marks = {
            "deep": b"[" * (MAX_JSON_DEPTH + 1) in body,
            "huge int": any(int(run) > 2**64 - 1 for run in re.findall(rb"\d{20,}", body)),
            "NaN/Infinity": b"NaN" in body or b"Infinity" in body,
            "lone surrogate": b"\\ud8" in body or b"\\udc" in body,
            "BOM": body.startswith(b"\xef\xbb\xbf"),
            "odd content type": case.content_type in ODD_TYPES,
            "mixed batch": len(case.items) > 1 and len({i.good for i in case.items}) == 2,
            "good": case.good,
            "duplicate key": any(not i.good and ', "x": ' in i.text for i in case.items),
            "bad envelope": case.kind == "bad shape",
        }
        seen.update(k for k, v in marks.items() if v)

    collect()
    print(f"fuzz cases: {CASES}; kinds seen: {sorted(seen)}")
    assert seen >= {
        "deep", "huge int", "NaN/Infinity", "lone surrogate", "BOM", "odd content type", "mixed batch", "good",
        "duplicate key", "bad envelope",
    }, seen  # fmt: skip
