"""The gateway's received time (a stage stamp) on the hop to ingest: one value, or one per message.

The gateway coalesces concurrent requests into one ingest call
(services/forward_ingest.py), so one call carries messages received at
different times. The header `X-Gateway-Received-Ns` then holds runs
`NS*COUNT`, comma-separated: the first run's NS is ns since the epoch, each
later one an offset from it (signed), in the order of the body's messages:

    1733390000000000000*1,+52000*1,+61000*3   (five messages, three times)

A plain `NS` (no runs) stamps every message of the call, as before
coalescing. Anything else, or runs that do not count the body's messages,
is ignored: the messages get no gateway stamp (a direct call to ingest has
none either), never an error for the client.
"""

from __future__ import annotations

from services.models import MAX_CREATED_AT


def encode(runs: list[tuple[int, int]]) -> str:
    """`(received ns, messages)` per caller, in body order -> the header's value."""
    first = runs[0][0]
    if len(runs) == 1:
        return str(first)
    return ",".join(f"{first}*{runs[0][1]}" if i == 0 else f"{ns - first:+d}*{n}" for i, (ns, n) in enumerate(runs))


def decode(value: str | None, messages: int) -> list[int] | None:
    """One stamp per message, or None when the header is missing, malformed or counts other messages."""
    if value is None:
        return None
    if "*" not in value:
        return [int(value)] * messages if value.isdigit() and len(value) <= 19 else None
    out: list[int] = []
    first = 0
    for i, run in enumerate(value.split(",")):
        ns_text, star, count_text = run.partition("*")
        digits = ns_text[1:] if i and ns_text[:1] in "+-" else ns_text
        if not star or not digits.isdigit() or len(digits) > 19 or not count_text.isdigit() or len(count_text) > 6:
            return None
        ns = int(ns_text) + first if i else int(ns_text)
        first = first if i else ns
        count = int(count_text)
        if not 0 <= ns <= MAX_CREATED_AT or len(out) + count > messages:
            return None
        out.extend([ns] * count)
    return out if len(out) == messages else None
