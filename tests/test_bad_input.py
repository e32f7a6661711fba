"""Bad input through the real gateway: a clear 4xx naming the problem, nothing enqueued.

One stack (memory queue, API key on, small limits) serves the whole matrix;
after it, the processor's counters must not have moved.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from experiments.runtime.stack import Stack, StackConfig
from services.models import InvalidInput, wire_to_message

pytestmark = pytest.mark.e2e

KEY = "s3cret-key"
MAX_BATCH = 50
MAX_BODY = 65_536
OK_HEADERS = {"X-API-Key": KEY, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cfg = StackConfig(
        queue="memory",
        workers=2,
        env={"MAX_BATCH": str(MAX_BATCH), "MAX_BODY_BYTES": str(MAX_BODY)},
        gateway_env={"API_KEY": KEY},
    )
    with Stack(cfg, tmp_path_factory.mktemp("bad-input")) as st:
        yield st


def enqueued(stack: Stack) -> int:
    return int(httpx.get(f"{stack.processor_url}/stats", trust_env=False).json()["queue"]["total_enqueued"])


def deep(n: int) -> bytes:
    return b'{"source": "x", "payload": ' + b"[" * n + b"]" * n + b"}"


def chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * 8192
        sent += 8192


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
    ("bad Idempotency-Key", {"json": GOOD, "headers": {"Idempotency-Key": "a b"}}, 422, "Idempotency-Key"),
    ("missing API key", {"json": GOOD, "headers": {"X-API-Key": ""}, "no_key": True}, 401, "API key"),
    ("wrong API key", {"json": GOOD, "headers": {"X-API-Key": "nope"}}, 401, "API key"),
    ("wrong bearer token", {"json": GOOD, "headers": {"Authorization": "Bearer nope"}, "no_key": True}, 401, "API key"),
]


@pytest.mark.parametrize(("case", "request_kw", "status", "names"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_4xx_and_nothing_is_enqueued(
    stack: Stack, case: str, request_kw: dict[str, Any], status: int, names: str
) -> None:
    kw = dict(request_kw)
    headers = {**OK_HEADERS, **kw.pop("headers", {})}
    if kw.pop("no_key", False):
        headers.pop("X-API-Key")
    headers = {k: v for k, v in headers.items() if v}
    if "json" in kw:
        kw["content"] = orjson.dumps(kw.pop("json"))
    before = enqueued(stack)
    r = httpx.post(f"{stack.gateway_url}/api/v1/ingest", headers=headers, timeout=10, trust_env=False, **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert names in r.json()["error"] or names in str(r.json().get("details")), r.json()
    assert enqueued(stack) == before


def test_the_matrix_positive_controls_are_accepted(stack: Stack) -> None:
    """The same stack takes good input both ways of giving the key: the 4xx above are about the input."""
    url = f"{stack.gateway_url}/api/v1/ingest"
    before = enqueued(stack)
    a = httpx.post(url, json=GOOD, headers={"X-API-Key": KEY}, trust_env=False)
    b = httpx.post(url, json=[GOOD] * MAX_BATCH, headers={"Authorization": f"Bearer {KEY}"}, trust_env=False)
    c = httpx.post(url, json={"source": "s", "payload": None}, headers={"X-API-Key": KEY}, trust_env=False)
    assert (a.status_code, b.status_code, c.status_code) == (202, 202, 202)
    assert enqueued(stack) == before + 1 + MAX_BATCH + 1


def test_ingest_and_processor_refuse_bad_input_directly(stack: Stack) -> None:
    """The inner services validate too: they are reachable on their own ports."""
    r = httpx.post(f"{stack.ingest.url}/api/v1/ingest", json={"payload": 1}, trust_env=False)
    assert r.status_code == 422
    assert "source" in r.json()["error"]
    r = httpx.post(
        f"{stack.processor_url}/api/v1/messages", json=[{"id": "x", "source": "s", "created_at": 1}], trust_env=False
    )
    assert r.status_code == 422
    assert "payload" in r.json()["error"]
    r = httpx.post(f"{stack.processor_url}/api/v1/messages", content=b"[", trust_env=False,
                   headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method_and_unknown_path_are_json_4xx(stack: Stack, method: str) -> None:
    r = httpx.request(method, f"{stack.gateway_url}/api/v1/ingest", trust_env=False)
    assert r.status_code == 405
    assert "error" in r.json()
    r = httpx.request(method, f"{stack.gateway_url}/nowhere", trust_env=False)
    assert r.status_code == 404
    assert "error" in r.json()


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
