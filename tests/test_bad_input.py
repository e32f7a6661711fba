"""Bad input: a clear 4xx naming the problem, nothing enqueued.

The matrix runs in process: the three real apps (`create_app` with settings
given, a memory backend) chained by `httpx.ASGITransport`, so it costs
milliseconds a case; after each case, the processor's counters must not have
moved. What only the deployment decides (body framing and limits on the
wire, through uvicorn and aiohttp between real processes) is checked once
more against a real stack at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from pydantic import SecretStr

from backends.memory import MemoryBackend
from experiments.runtime.stack import Stack, StackConfig
from services import gateway, ingest, processor
from services.inprocess import AsgiHops, lifespans
from services.models import InvalidInput, wire_to_message
from services.settings import BackendSettings, GatewaySettings, IngestSettings, ProcessorSettings

in_process = pytest.mark.asyncio(loop_scope="module")  # the chain's loop: one for the module

KEY = "s3cret-key"
MAX_BATCH = 50
MAX_BODY = 65_536
OK_HEADERS = {"X-API-Key": KEY, "Content-Type": "application/json"}
INGEST_URL = "http://ingest.inprocess"
PROCESSOR_URL = "http://processor.inprocess"


@dataclass
class Chain:
    """gateway -> ingest -> processor in this process; a client for each, as their ports would be."""

    gateway: httpx.AsyncClient
    ingest: httpx.AsyncClient
    processor: httpx.AsyncClient


def _client(app: Any, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}.inprocess", timeout=10)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chain]:
    ledger = tmp_path_factory.mktemp("bad-input") / "ledger.sqlite"
    proc_app = processor.create_app(
        ProcessorSettings(
            workers=2, max_batch=MAX_BATCH, max_body_bytes=MAX_BODY, ledger_path=str(ledger), instance="p-0"
        ),
        backend=MemoryBackend(),
        backend_settings=BackendSettings(),
    )
    ingest_app = ingest.create_app(
        IngestSettings(max_batch=MAX_BATCH, max_body_bytes=MAX_BODY, processor_url=PROCESSOR_URL),
        downstream=AsgiHops({PROCESSOR_URL: proc_app}),
    )
    gateway_app = gateway.create_app(
        GatewaySettings(
            max_batch=MAX_BATCH,
            max_body_bytes=MAX_BODY,
            ingest_url=INGEST_URL,
            processor_url=PROCESSOR_URL,
            api_key=SecretStr(KEY),
        ),
        downstream=AsgiHops({INGEST_URL: ingest_app, PROCESSOR_URL: proc_app}),
    )
    async with lifespans(proc_app, ingest_app, gateway_app):
        clients = Chain(_client(gateway_app, "gateway"), _client(ingest_app, "ingest"), _client(proc_app, "processor"))
        try:
            yield clients
        finally:
            for c in (clients.gateway, clients.ingest, clients.processor):
                await c.aclose()


async def enqueued(chain: Chain) -> int:
    return int((await chain.processor.get("/stats")).json()["queue"]["total_enqueued"])


def deep(n: int) -> bytes:
    return b'{"source": "x", "payload": ' + b"[" * n + b"]" * n + b"}"


def chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * 8192
        sent += 8192


async def _async(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c


def _request(request_kw: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and httpx keywords for one case of the matrix."""
    kw = dict(request_kw)
    headers = {**OK_HEADERS, **kw.pop("headers", {})}
    if kw.pop("no_key", False):
        headers.pop("X-API-Key")
    headers = {k: v for k, v in headers.items() if v}
    if "json" in kw:
        kw["content"] = orjson.dumps(kw.pop("json"))
    return headers, kw


GOOD = {"source": "s", "payload": 1}

CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("malformed JSON", {"content": b'{"source": "s", "payload": '}, 400, "malformed JSON"),
    ("empty body", {"content": b""}, 400, "empty body"),
    ("non-JSON body", {"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type"),
    (
        "wrong content type",
        {"content": orjson.dumps(GOOD), "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        415,
        "application/json",
    ),
    ("missing source", {"json": {"payload": 1}}, 422, "source"),
    ("empty source", {"json": {"source": "", "payload": 1}}, 422, "source"),
    ("non-string source", {"json": {"source": 123, "payload": 1}}, 422, "source"),
    ("null source", {"json": {"source": None, "payload": 1}}, 422, "source"),
    ("missing payload", {"json": {"source": "s"}}, 422, "payload"),
    ("unknown field", {"json": {"source": "s", "payload": 1, "extra": True}}, 422, "extra"),
    ("bad client id", {"json": {"source": "s", "payload": 1, "id": "has space"}}, 422, "id"),
    ("scalar body", {"json": 5}, 422, "object"),
    ("empty list", {"json": []}, 422, "empty list"),
    ("list over the limit", {"json": [GOOD] * (MAX_BATCH + 1)}, 422, "MAX_BATCH"),
    ("one bad item in a list", {"json": [GOOD, GOOD, GOOD, {"source": 7, "payload": 1}]}, 422, "body.3.source"),
    ("list of non-objects", {"json": [1, 2]}, 422, "body.0"),
    ("body over the limit", {"content": b" " * (MAX_BODY + 1) + orjson.dumps(GOOD)}, 413, "MAX_BODY_BYTES"),
    ("chunked body over the limit", {"content": chunks(MAX_BODY + 10_000)}, 413, "MAX_BODY_BYTES"),
    ("JSON nested 10,000 deep", {"content": deep(10_000)}, 400, "malformed JSON"),
    ("JSON nested 300 deep", {"content": deep(300)}, 422, "MAX_JSON_DEPTH=128"),
    ("JSON nested 253 deep", {"content": deep(253)}, 422, "MAX_JSON_DEPTH=128"),
    ("integer 2**100", {"content": b'{"source": "s", "payload": %d}' % 2**100}, 422, "body.payload"),
    (
        "integer below -2**63",
        {"content": b'[{"source": "s", "payload": {"n": %d}}]' % (-(2**63) - 1)},
        422,
        "body.0.payload.n",
    ),
    ("more digits than a double", {"content": b'{"source": "s", "payload": 0.1000000000000000000001}'}, 422, "string"),
    ("duplicate key", {"content": b'{"source": "s", "payload": {"a": 1, "a": 2}}'}, 422, "body.payload.a"),
    ("NaN token", {"content": b'{"source": "s", "payload": NaN}'}, 400, "malformed JSON"),
    ("lone surrogate", {"content": b'{"source": "s", "payload": "\\ud800"}'}, 400, "malformed JSON"),
    ("byte order mark", {"content": b'\xef\xbb\xbf{"source": "s", "payload": 1}'}, 400, "malformed JSON"),
    ("bad Idempotency-Key", {"json": GOOD, "headers": {"Idempotency-Key": "a b"}}, 422, "Idempotency-Key"),
    ("missing API key", {"json": GOOD, "headers": {"X-API-Key": ""}, "no_key": True}, 401, "API key"),
    ("wrong API key", {"json": GOOD, "headers": {"X-API-Key": "nope"}}, 401, "API key"),
    ("wrong bearer token", {"json": GOOD, "headers": {"Authorization": "Bearer nope"}, "no_key": True}, 401, "API key"),
]


@in_process
@pytest.mark.parametrize(("case", "request_kw", "status", "names"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_is_a_clear_4xx_and_nothing_is_enqueued(
    chain: Chain, case: str, request_kw: dict[str, Any], status: int, names: str
) -> None:
    headers, kw = _request(request_kw)
    if isinstance(kw.get("content"), Iterator):
        kw["content"] = _async(kw["content"])
    before = await enqueued(chain)
    r = await chain.gateway.post("/api/v1/ingest", headers=headers, **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert names in r.json()["error"] or names in str(r.json().get("details")), r.json()
    assert await enqueued(chain) == before


@in_process
async def test_the_matrix_positive_controls_are_accepted(chain: Chain) -> None:
    """The same chain takes good input both ways of giving the key: the 4xx above are about the input."""
    before = await enqueued(chain)
    a = await chain.gateway.post("/api/v1/ingest", json=GOOD, headers={"X-API-Key": KEY})
    b = await chain.gateway.post("/api/v1/ingest", json=[GOOD] * MAX_BATCH, headers={"Authorization": f"Bearer {KEY}"})
    c = await chain.gateway.post("/api/v1/ingest", json={"source": "s", "payload": None}, headers={"X-API-Key": KEY})
    assert (a.status_code, b.status_code, c.status_code) == (202, 202, 202)
    assert await enqueued(chain) == before + 1 + MAX_BATCH + 1


BIG = 2**100  # 1267650600228229401496703205376: orjson would read it as the float 1.2676506002282294e+30


@in_process
@pytest.mark.parametrize("service", ["gateway", "ingest", "processor"])
async def test_regression_depth_300_and_2_to_the_100_are_422_naming_field_and_limit(chain: Chain, service: str) -> None:
    """Were 500 (depth 300: orjson parsed, then could not encode) and 202 with a changed payload (2**100)."""
    client, path, envelope = {
        "gateway": (chain.gateway, "/api/v1/ingest", b'{"source": "s", "payload": %s}'),
        "ingest": (chain.ingest, "/api/v1/ingest", b'{"source": "s", "payload": %s}'),
        "processor": (
            chain.processor,
            "/api/v1/messages",
            b'[{"id": "r", "source": "s", "created_at": 1, "payload": %s}]',
        ),
    }[service]
    field = "body.0.payload" if service == "processor" else "body.payload"
    before = await enqueued(chain)
    deep_body = envelope % (b"[" * 300 + b"]" * 300)
    r = await client.post(path, content=deep_body, headers=OK_HEADERS)
    assert (r.status_code, r.json()) == (
        422,
        {
            "error": f"{field}: nested deeper than MAX_JSON_DEPTH=128 levels",
            "details": [{"field": field, "problem": "nested deeper than 128 levels (MAX_JSON_DEPTH)"}],
        },
    )
    r = await client.post(path, content=envelope % str(BIG).encode(), headers=OK_HEADERS)
    problem = (
        f"integer {BIG} is outside -2**63 .. 2**64-1 and would be stored as the float 1.2676506002282294e+30; "
        "send it as a string"
    )
    assert (r.status_code, r.json()) == (
        422,
        {"error": f"{field}: {problem}", "details": [{"field": field, "problem": problem}]},
    )
    assert await enqueued(chain) == before
    # the largest of each still goes through, unchanged
    r = await client.post(path, content=envelope % (b"[" * 120 + b"]" * 120), headers=OK_HEADERS)
    assert r.status_code == 202, r.text
    r = await client.post(
        path, content=(envelope % str(2**64 - 1).encode()).replace(b'"r"', b'"r2"'), headers=OK_HEADERS
    )
    assert r.status_code == 202, r.text
    assert await enqueued(chain) == before + 2


@in_process
async def test_ingest_and_processor_refuse_bad_input_directly(chain: Chain) -> None:
    """The inner services validate too: they are reachable on their own ports."""
    r = await chain.ingest.post("/api/v1/ingest", json={"payload": 1})
    assert r.status_code == 422
    assert "source" in r.json()["error"]
    r = await chain.processor.post("/api/v1/messages", json=[{"id": "x", "source": "s", "created_at": 1}])
    assert r.status_code == 422
    assert "payload" in r.json()["error"]
    r = await chain.processor.post("/api/v1/messages", content=b"[", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


@in_process
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_wrong_method_and_unknown_path_are_json_4xx(chain: Chain, method: str) -> None:
    r = await chain.gateway.request(method, "/api/v1/ingest")
    assert r.status_code == 405
    assert "error" in r.json()
    r = await chain.gateway.request(method, "/nowhere")
    assert r.status_code == 404
    assert "error" in r.json()


# What the deployment decides: framing and limits of bodies on the wire, through
# uvicorn (httptools) and the aiohttp hops between real processes.
WIRE_CASES = ["body over the limit", "chunked body over the limit", "malformed JSON", "wrong content type"]


@pytest.mark.e2e
def test_the_deployment_refuses_bad_bodies_on_the_wire_and_takes_good_ones(tmp_path: Path) -> None:
    cfg = StackConfig(
        queue="memory",
        workers=2,
        env={"MAX_BATCH": str(MAX_BATCH), "MAX_BODY_BYTES": str(MAX_BODY)},
        gateway_env={"API_KEY": KEY},
    )
    wire_cases = {c[0]: c for c in CASES if c[0] in WIRE_CASES}
    wire_cases["chunked body over the limit"] = (
        "chunked body over the limit", {"content": chunks(MAX_BODY + 10_000)}, 413, "MAX_BODY_BYTES"
    )  # fmt: skip
    assert sorted(wire_cases) == sorted(WIRE_CASES)
    with Stack(cfg, tmp_path / "stack") as stack, httpx.Client(trust_env=False, timeout=10) as client:
        url = f"{stack.gateway_url}/api/v1/ingest"

        def stored() -> int:
            return int(client.get(f"{stack.processor_url}/stats").json()["queue"]["total_enqueued"])

        for case, request_kw, status, names in wire_cases.values():
            headers, kw = _request(request_kw)
            r = client.post(url, headers=headers, **kw)
            assert r.status_code == status, (case, r.text)
            assert names in r.json()["error"], (case, r.json())
        assert stored() == 0
        good = client.post(url, json=[GOOD] * MAX_BATCH, headers={"X-API-Key": KEY})
        assert good.status_code == 202, good.text
        assert stored() == MAX_BATCH


@pytest.mark.parametrize(
    ("wire", "names"),
    [
        ({"id": "a", "source": "s", "payload": 1, "created_at": 1, "attributes": {"k": 1}}, "attributes"),
        ({"id": "a\r\nX: y", "source": "s", "payload": 1, "created_at": 1}, "id must match"),
        ({"id": "", "source": "s", "payload": 1, "created_at": 1}, "id must match"),
        ({"id": "a", "source": "s", "payload": 1, "created_at": -1}, "created_at"),
        ({"id": "a", "source": "s", "payload": 1, "created_at": 2**64}, "created_at"),
        ({"id": "a", "source": "s", "payload": 1, "created_at": 1.5}, "wrong types"),
        ({"id": "a", "source": "s", "payload": 1, "created_at": 1, "extra": 1}, "unknown message fields"),
    ],
)
def test_processor_wire_check_holds_to_its_documented_schema(wire: dict[str, Any], names: str) -> None:
    """Found by schemathesis: the processor accepted attributes that were not strings (and any id)."""
    with pytest.raises(InvalidInput, match=names):
        wire_to_message(wire)


def test_processor_wire_check_takes_an_integral_float_as_json_schema_does() -> None:
    m = wire_to_message({"id": "a", "source": "s", "payload": None, "created_at": 638.0, "attributes": None})
    assert (m.created_at, type(m.created_at), m.attributes) == (638, int, {})
