"""Accounting by message id: what was sent, acknowledged and processed, and so what was lost or duplicated.

Jepsen's queue workload, in small: A = ids sent, G = ids that got a 2xx,
P = ids processed (from the processors' ledgers). Nothing lost means G ⊆ P;
P ⊆ A always (nothing invented). Duplicates (processed more than once) are
counted, not hidden: at-least-once delivery allows them after a crash.
The notebooks' result rows and the fault tests count with this one class.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.workload.load import LoadResult
from services.ledger import altered_rows, read_ledger


@dataclass
class Accounting:
    """What was sent, acknowledged and processed, by message id."""

    sent: set[str]
    acked: set[str]
    processed: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> set[str]:
        """Acknowledged to the client, never processed."""
        return self.acked - set(self.processed)

    @property
    def duplicated(self) -> dict[str, int]:
        """Ids processed more than once, with how often."""
        return {i: n for i, n in self.processed.items() if n > 1}

    @property
    def extra_deliveries(self) -> int:
        """Processings beyond the first, over all duplicated ids."""
        return sum(self.duplicated.values()) - len(self.duplicated)

    @property
    def unacked_processed(self) -> set[str]:
        """Processed although the client saw no 2xx (a timed-out request that was stored after all)."""
        return set(self.processed) - self.acked

    @property
    def invented(self) -> set[str]:
        """Processed but never sent: must always be empty."""
        return set(self.processed) - self.sent

    def summary(self, label: str) -> str:
        dup = self.duplicated
        return (
            f"{label}: A={len(self.sent)} G={len(self.acked)} P={len(self.processed)} "
            f"lost={len(self.lost)} duplicated={len(dup)} (extra deliveries {self.extra_deliveries})"
        )


def processed_counts(ledgers: Iterable[Path], ids: set[str] | None = None) -> Counter[str]:
    """How often each id was processed, across every processor's ledger."""
    seen: Counter[str] = Counter()
    for path in ledgers:
        if path.exists():
            seen.update(r.id for r in read_ledger(path) if r.outcome == "processed" and (ids is None or r.id in ids))
    return seen


async def wait_processed(
    ledgers: list[Path], ids: set[str], timeout: float, settle: float = 1.0, idle: float | None = None
) -> Counter[str]:
    """Poll the ledgers until every id in `ids` is processed or `timeout` passes.

    `idle`: also stop once nothing new was processed for that long (what a
    lost queue held will not come). Then wait `settle` s more, so late
    duplicates (a redelivery after ack_wait) are counted too.
    """
    deadline = time.monotonic() + timeout
    seen, changed = -1, time.monotonic()
    while time.monotonic() < deadline:
        done = set(processed_counts(ledgers, ids))
        if ids <= done:
            break
        if len(done) != seen:
            seen, changed = len(done), time.monotonic()
        elif idle is not None and time.monotonic() - changed > idle:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(settle)
    return processed_counts(ledgers)


def acked_ids(result: LoadResult) -> set[str]:
    """The ids the gateway answered with a 2xx (needs `keep_ids=True` in the load)."""
    return {i for r in result.ok for i in r.ids}


@dataclass(frozen=True)
class LossSplit:
    """Lost ids by where they sit in send order, as Jepsen splits them.

    prefix: lost before the first acknowledged id that was processed;
    postfix: lost after the last one; middle: lost between processed ones
    (a hole, not a truncated tail: the worst kind). All lost when none was processed.
    """

    prefix: int = 0
    middle: int = 0
    postfix: int = 0


def loss_split(acked_in_send_order: Sequence[str], processed: Container[str]) -> LossSplit:
    """Split the acknowledged-but-unprocessed ids by their place in send order."""
    survived = [i for i, mid in enumerate(acked_in_send_order) if mid in processed]
    lost = [i for i, mid in enumerate(acked_in_send_order) if mid not in processed]
    if not survived:
        return LossSplit(postfix=len(lost))
    first, last = survived[0], survived[-1]
    return LossSplit(
        prefix=sum(1 for i in lost if i < first),
        middle=sum(1 for i in lost if first < i < last),
        postfix=sum(1 for i in lost if i > last),
    )


def recovered(sent_before_fault: Iterable[str], first_processed_ns: Mapping[str, int], fault_end_ns: int) -> int:
    """Acknowledged before the fault and first processed after it: what the store kept across it."""
    return sum(1 for mid in sent_before_fault if first_processed_ns.get(mid, -1) > fault_end_ns)


def altered_ids(ledgers: Iterable[Path], prefix: str = "") -> set[str]:
    """Ids (starting with `prefix`) that some processor processed with a payload digest other than the one sent."""
    return {i for path in ledgers if path.exists() for i in altered_rows(path) if i.startswith(prefix)}


def altered(ledgers: Iterable[Path]) -> int:
    """Ledger rows whose processed payload differs from the one the first hop stamped (by digest): must be 0."""
    return sum(len(altered_rows(path)) for path in ledgers if path.exists())
