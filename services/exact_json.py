"""What a body may hold so that what is stored is exactly what was sent.

orjson parses every body once, fast. Four things it accepts would then be
changed without a word, or fail later as a 5xx:

- an integer outside -2**63 .. 2**64-1 becomes a float
  (123456789012345678901234567890 is stored as 1.2345678901234568e+29);
- a number with more digits than a 64-bit float keeps is rounded
  (0.1000000000000000000001 becomes 0.1; 1e-400 becomes 0.0);
- of a duplicate key only the last value is kept;
- nesting beyond orjson's encoder limit (254) parses, then fails to
  encode: a 500 at the first hop, or in ingest's batch for every caller.

`check` refuses each with a 422 naming the field and the limit. It costs
a few C-speed passes over the body (a regular expression and byte
translations) plus one orjson encode; only a body that could hold a lost
number or a duplicate key (digits in a row, an exponent, fewer keys parsed
than written) is parsed again, by the standard library with hooks, to
find which field it is.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

from services.models import InvalidInput

# The deepest nesting a body may have. Ingest wraps a payload two levels deeper
# (a list of messages, a message), and orjson cannot encode deeper than 254.
MAX_JSON_DEPTH = 128
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson reads as an integer

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_WHITESPACE = b" \t\r\n"
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_INNERMOST = re.compile(rb"\[\]|\{\}")
# After strings, literals and decimal points are gone: 16 digits in a row, or an exponent.
_MAY_LOSE_DIGITS = re.compile(rb"\d{16}|[eE]")


def check(body: bytes, data: Any) -> None:
    """`InvalidInput` (422, naming the field and the limit) if storing `data` would not keep what `body` says."""
    skeleton = _STRING.sub(b'""', body).translate(None, _WHITESPACE)
    if _depth_over(skeleton.translate(None, _NOT_BRACKETS), MAX_JSON_DEPTH):
        # the item's field (body.payload, body.3.payload), not a path hundreds of levels long
        field = ".".join(_deep_path(data, MAX_JSON_DEPTH).split(".")[: 3 if isinstance(data, list) else 2])
        raise InvalidInput(
            422,
            f"{field}: nested deeper than MAX_JSON_DEPTH={MAX_JSON_DEPTH} levels",
            [{"field": field, "problem": f"nested deeper than {MAX_JSON_DEPTH} levels (MAX_JSON_DEPTH)"}],
        )
    digits = skeleton.replace(b"true", b"").replace(b"false", b"").replace(b".", b"")
    keys_written = skeleton.count(b'"":')
    if _MAY_LOSE_DIGITS.search(digits) or keys_written != _keys_parsed(data):
        _refuse_what_would_change(body)


def _depth_over(brackets: bytes, limit: int) -> bool:
    """Whether balanced brackets nest deeper than `limit` (each pass removes the innermost level)."""
    depth = 0
    while brackets:
        if depth == limit:
            return True
        brackets = _INNERMOST.sub(b"", brackets)
        depth += 1
    return False


def _keys_parsed(data: Any) -> int:
    """Keys of every object in `data`, counted in its orjson encoding (no whitespace there)."""
    return _STRING.sub(b'""', orjson.dumps(data)).count(b'"":')


def _deep_path(data: Any, limit: int) -> str:
    """The path of the first value nested deeper than `limit`, as `body.a.0.b`."""
    stack: list[tuple[Any, str, int]] = [(data, "body", 1)]
    while stack:
        value, path, depth = stack.pop()
        if depth > limit:
            return path
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}", depth + 1) for k, v in value.items() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, f"{path}.{i}", depth + 1) for i, v in enumerate(value) if isinstance(v, dict | list))
    return "body"


class _Changed:
    """Where the standard library's parse found a value orjson would change: the problem, placed in the tree."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


class _Pairs(dict[str, Any]):
    """An object as the standard library parsed it, with its first duplicate key (if any)."""

    duplicate: str | None = None


def _parse_int(token: str) -> int | _Changed:
    value = int(token)
    if INT_MIN <= value <= INT_MAX:
        return value
    return _Changed(
        f"integer {token} is outside -2**63 .. 2**64-1 and would be stored as the float {float(value)!r}; "
        "send it as a string"
    )


def _parse_float(token: str) -> float | _Changed:
    value = float(token)
    if Decimal(token) == Decimal(repr(value)):
        return value
    return _Changed(
        f"number {token} has more digits than a 64-bit float keeps and would be stored as {value!r}; "
        "send it as a string"
    )


def _pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    out = _Pairs()
    for key, value in pairs:
        if key in out and out.duplicate is None:
            out.duplicate = key
        out[key] = value
    return out


def _refuse_what_would_change(body: bytes) -> None:
    tree = json.loads(body, parse_int=_parse_int, parse_float=_parse_float, object_pairs_hook=_pairs)
    stack: list[tuple[Any, str]] = [(tree, "body")]
    while stack:
        value, path = stack.pop(0)
        if isinstance(value, _Changed):
            problem = value.problem
        elif isinstance(value, _Pairs) and value.duplicate is not None:
            path, problem = f"{path}.{value.duplicate}", "duplicate key: only the last value would be kept"
        else:
            if isinstance(value, dict):
                stack.extend((v, f"{path}.{k}") for k, v in value.items())
            elif isinstance(value, list):
                stack.extend((v, f"{path}.{i}") for i, v in enumerate(value))
            continue
        raise InvalidInput(422, f"{path}: {problem}", [{"field": path, "problem": problem}])
