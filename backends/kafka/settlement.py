"""Which offsets may be committed: the contiguous prefix of settled records, per partition.

A classic consumer group stores one offset per partition: "everything before
this is done". Workers settle records out of order (a slow message, a nak), so
the committed offset may only move past a record once it and every record
before it are settled (acked, termed or dead-lettered). A crash then redelivers
what was not settled, plus perhaps some settled records after the first
unsettled one: at-least-once, never lost.

Pure bookkeeping, no I/O: the consumer calls `received`, `settle` and reads
`commit_offset`; `pending` is what this process holds and has not settled.
"""

from __future__ import annotations

from collections import deque


class PartitionLedger:
    """The records of one partition this consumer received, in offset order."""

    __slots__ = ("_done", "_next", "_order")

    def __init__(self, start: int) -> None:
        self._order: deque[int] = deque()
        self._done: set[int] = set()
        self._next = start  # the offset to commit: every record before it is settled

    def received(self, offset: int) -> None:
        if not self._order and offset > self._next:
            self._next = offset  # a gap (deleted by retention, or a control record): nothing in it to settle
        self._order.append(offset)

    def settle(self, offset: int) -> bool:
        """Mark one record settled; true when the committable offset moved."""
        self._done.add(offset)
        moved = False
        while self._order and self._order[0] in self._done:
            first = self._order.popleft()
            self._done.discard(first)
            self._next = first + 1
            moved = True
        return moved

    @property
    def commit_offset(self) -> int:
        return self._next

    @property
    def settled_ahead(self) -> int:
        """Settled records after the first unsettled one: done, but not yet committable."""
        return len(self._done)

    @property
    def pending(self) -> int:
        return len(self._order) - len(self._done)
