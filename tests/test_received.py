"""The gateway's received-time header on the hop to ingest: one stamp per message, malformed ones ignored."""

from __future__ import annotations

import pytest

from services import received

T = 1_733_390_000_000_000_000


def test_runs_round_trip_in_body_order_with_signed_offsets() -> None:
    runs = [(T, 1), (T + 52_000, 2), (T - 3_000, 1)]  # a later caller may have been received a little earlier
    value = received.encode(runs)
    assert value == f"{T}*1,+52000*2,-3000*1"
    assert received.decode(value, 4) == [T, T + 52_000, T + 52_000, T - 3_000]


def test_one_caller_is_the_plain_value_that_stamps_every_message() -> None:
    assert received.encode([(T, 3)]) == str(T)
    assert received.decode(str(T), 3) == [T, T, T]


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "abc",
        "-5",
        "1" * 20,
        f"{T}*1,+5*1",
        f"{T}*3",
        f"+{T}*1",
        f"{T}*1,5x*1",
        f"{T}*1,+5*",
        "*1",
        "9" * 19 + "*1",
    ],
)
def test_anything_else_gives_no_stamps(value: str | None) -> None:
    assert received.decode(value, 1 if value != f"{T}*1,+5*1" else 3) is None
