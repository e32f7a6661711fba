"""Request and response shapes shared by the services, and their validation.

The public shape (`IngestItem`, and `OriginalItem`: the Go original's body,
which its clients still send) is validated strictly with pydantic so every
error names its field; the internal hop ingest -> processor carries full
messages (`WireMessage`) and is checked by a fast hand-written function,
since it runs for every message at full rate and its input comes from ingest.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from backends.contract import Message, payload_digest

ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
# gateway -> ingest: when the gateway received the request, ns since the epoch (a stage stamp)
RECEIVED_HEADER = "X-Gateway-Received-Ns"
# gateway -> ingest: each item's payload digest, comma-separated in item order (stamped at the first hop)
DIGESTS_HEADER = "X-Payload-Digests"
_DIGEST = re.compile(r"^[0-9a-f]{32}$")


def digests_of(items: list[IngestItem]) -> list[str]:
    """Each item's `payload_digest`, in order."""
    return [payload_digest(item.payload) for item in items]


def given_digests(value: str | None, count: int) -> list[str] | None:
    """The digests an earlier hop stamped (`DIGESTS_HEADER`), if well-formed and one per item; else None."""
    if value is None:
        return None
    digests = value.split(",")
    if len(digests) != count or not all(_DIGEST.match(d) for d in digests):
        return None
    return digests


class IngestItem(BaseModel):
    """One message as a client sends it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    source: str = Field(min_length=1, max_length=256, description="who sent it; non-empty")
    payload: Any = Field(description="any JSON value (required, may be null)")
    id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="optional client-given id: the dedup key, so a retried request is stored once",
    )
    attributes: dict[str, str] | None = Field(
        None, description="optional string labels stored with the message (the original's `metadata`)"
    )


class OriginalItem(BaseModel):
    """One message in the Go original's format: `data` becomes the payload, `metadata` the attributes.

    Its clients, scripts and load tests still send this body, so both are
    accepted; a body with both `data` and `payload`, or neither, is a 422.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    source: str = Field(min_length=1, max_length=256, description="who sent it; non-empty")
    data: str = Field(description="the payload, as a string (the original's format)")
    metadata: dict[str, str] | None = Field(None, description="optional string labels: become the attributes")


# ns since the epoch, until the year 2255: inside a signed 64-bit integer, and
# exactly representable as a double, so a JSON number of that value is read exactly.
MAX_CREATED_AT = 9_000_000_000_000_000_000


class WireMessage(BaseModel):
    """A message on the internal hop ingest -> processor (documentation shape; `wire_to_message` enforces it)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN, description="the dedup key (NATS Nats-Msg-Id header)")
    source: str
    payload: Any
    created_at: int = Field(ge=0, le=MAX_CREATED_AT, description="ns since the Unix epoch, stamped by ingest")
    attributes: dict[str, str] | None = Field(default_factory=dict, description="null is taken as {}")
    stamps: dict[str, Annotated[int, Field(ge=0, le=MAX_CREATED_AT)]] = Field(
        default_factory=dict, description="earlier hops' times, ns since the epoch (`gateway`: received there)"
    )
    digest: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{32}$",
        description="BLAKE2b-128 of the payload's canonical JSON, stamped at the first hop; computed here if absent",
    )


class Accepted(BaseModel):
    """202: every message is stored in the queue backend."""

    ids: list[str]
    count: int
    duplicates: int = Field(description="ids that were already stored (a retry); stored once")
    duplicate_positions: list[int] = Field(default_factory=list, description="which of `ids` were duplicates")
    message_id: str | None = Field(None, description="the original's field: the id, when the body was one message")
    messageId: str | None = Field(  # the spelling the original's clients read
        None, description="`message_id` as the original's clients (its scripts, k6 checks) spell it"
    )
    status: Literal["accepted"] | None = Field(None, description="the original's field, when the body was one message")


def with_original_fields(status: int, answer: bytes) -> bytes:
    """The answer to one message, plus the original's `message_id` (also `messageId`) and `status` (on a 2xx)."""
    if not 200 <= status < 300:
        return answer
    body = orjson.loads(answer)
    body["message_id"] = body["messageId"] = body["ids"][0]
    body["status"] = "accepted"
    return orjson.dumps(body)


class ComponentStats(BaseModel):
    """One service in `/api/v1/status` in the original's shape."""

    healthy: bool = Field(description="its /health answered 200")
    stats: dict[str, Any] | None = Field(description="its /stats, or null when it did not answer")


class SystemStatus(BaseModel):
    """`GET /api/v1/status`: ours (`status`, `components`) and the original's (`healthy`, `ingest`, `processor`)."""

    status: Literal["ok", "degraded"]
    healthy: bool = Field(description="every component is ok (the original's field)")
    components: dict[str, dict[str, Any]] = Field(
        description="gateway, ingest, processor, backend: each with `status` (ok/down/unavailable) and reasons"
    )
    ingest: ComponentStats
    processor: ComponentStats
    services: dict[str, Literal["healthy", "unhealthy"]] = Field(
        description="gateway, ingest, processor: healthy or not (the field the original's clients look for)"
    )


class ErrorBody(BaseModel):
    error: str
    details: list[dict[str, Any]] | None = None


_items = TypeAdapter(list[IngestItem])
_original = TypeAdapter(OriginalItem)


class InvalidInput(ValueError):
    """Input that is well-formed JSON but not what the API takes; becomes a 4xx."""

    def __init__(self, status: int, error: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details


def parse_items(data: Any, max_batch: int) -> list[IngestItem]:
    """One object or a list of them (ours or the original's format) -> validated items, or `InvalidInput`."""
    single = isinstance(data, dict)
    raw = [data] if single else data
    if not isinstance(raw, list):
        raise InvalidInput(422, "body must be a JSON object or a list of objects")
    if not raw:
        raise InvalidInput(422, "empty list: send at least one message")
    if len(raw) > max_batch:
        raise InvalidInput(422, f"too many messages: {len(raw)} > MAX_BATCH={max_batch}")
    if any(type(d) is dict and "data" in d for d in raw):
        raw = [_from_original(d, "" if single else f"{i}.") if type(d) is dict else d for i, d in enumerate(raw)]
    try:
        return _items.validate_python(raw)
    except ValidationError as exc:
        details = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = list(err["loc"])
            field = ".".join(str(p) for p in (loc[1:] if single else loc))
            details.append({"field": f"body.{field}" if field else "body", "problem": err["msg"]})
            if err["type"] == "missing" and loc[-1] == "payload":
                details.append({"field": details[-1]["field"][: -len("payload")] + "data", "problem": _EITHER})
        first = details[0]
        raise InvalidInput(422, f"invalid message: {first['field']}: {first['problem']}", details) from None


_EITHER = "give payload (any JSON) or data (a string, the original's format): one of the two"


def _from_original(d: dict[str, Any], at: str) -> dict[str, Any]:
    """An item of the original's format as ours (`data` -> payload, `metadata` -> attributes)."""
    if "data" not in d:
        return d
    if "payload" in d:
        details = [{"field": f"body.{at}payload", "problem": _EITHER}, {"field": f"body.{at}data", "problem": _EITHER}]
        raise InvalidInput(422, f"invalid message: body.{at}payload and body.{at}data: {_EITHER}", details)
    try:
        item = _original.validate_python(d)
    except ValidationError as exc:
        details = [
            {"field": f"body.{at}" + ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        first = details[0]
        raise InvalidInput(422, f"invalid message: {first['field']}: {first['problem']}", details) from None
    out: dict[str, Any] = {"source": item.source, "payload": item.data}
    if item.metadata:
        out["attributes"] = item.metadata
    return out


_WIRE_FIELDS = frozenset(("id", "source", "payload", "created_at", "attributes", "stamps", "digest"))
_valid_id = re.compile(ID_PATTERN).match


def wire_to_message(d: Any, received_at: int | None = None) -> Message:
    """Fast check of one internal message against `WireMessage`; `InvalidInput` on anything off.

    The id becomes a NATS header, so it is held to `ID_PATTERN` here too
    (the processor's port is reachable on its own, not only from ingest).
    `received_at` (ns) is added to the stamps as `processor`.
    """
    if type(d) is not dict:
        raise InvalidInput(422, "message must be an object")
    try:
        mid, source, created_at = d["id"], d["source"], d["created_at"]
        payload = d["payload"]
    except KeyError as exc:
        raise InvalidInput(422, f"message field missing: {exc.args[0]}") from None
    if len(d) > 4 and not d.keys() <= _WIRE_FIELDS:
        raise InvalidInput(422, f"unknown message fields: {sorted(d.keys() - _WIRE_FIELDS)}")
    attributes = d.get("attributes")
    if attributes is None:
        attributes = {}
    if type(created_at) is float and created_at.is_integer():  # JSON Schema's integer includes 638.0
        created_at = int(created_at)
    if type(mid) is not str or type(source) is not str or type(created_at) is not int or type(attributes) is not dict:
        raise InvalidInput(422, "message fields have wrong types")
    if not _valid_id(mid):
        raise InvalidInput(422, f"message id must match {ID_PATTERN}")
    if not 0 <= created_at <= MAX_CREATED_AT:
        raise InvalidInput(422, f"created_at must be ns since the epoch (0 .. {MAX_CREATED_AT})")
    if attributes and not all(type(v) is str for v in attributes.values()):
        raise InvalidInput(422, "attributes must map strings to strings")
    stamps = d.get("stamps", {})
    if type(stamps) is not dict:
        raise InvalidInput(422, "stamps must be an object")
    if stamps:
        stamps = {k: int(v) if type(v) is float and v.is_integer() else v for k, v in stamps.items()}
        if not all(type(v) is int and 0 <= v <= MAX_CREATED_AT for v in stamps.values()):
            raise InvalidInput(422, f"stamps must map names to ns since the epoch (0 .. {MAX_CREATED_AT})")
    else:
        stamps = {}
    if received_at is not None:
        stamps["processor"] = received_at
    digest = d.get("digest")
    if digest is None:
        digest = payload_digest(payload)  # this processor is the first hop that sees it
    elif type(digest) is not str or not _DIGEST.match(digest):
        raise InvalidInput(422, "digest must be 32 lowercase hex digits (BLAKE2b-128 of the payload)")
    return Message(
        id=mid,
        source=source,
        payload=payload,
        created_at=created_at,
        attributes=attributes,
        stamps=stamps,
        digest=digest,
    )
