"""Each warning once per cause: a bench builds a backend per round and configuration, and each said the same.

A cause is the logger plus the message template (`record.msg`, before its
arguments are filled in): the eighth "NATS 2.x is not sync_always" of a run
adds nothing, a different warning still comes through.
"""

from __future__ import annotations

import logging


class OncePerCause(logging.Filter):
    """Lets a WARNING-or-above record through the first time its (logger, template) is seen."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        cause = (record.name, str(record.msg))
        if cause in self.seen:
            self.dropped += 1
            return False
        self.seen.add(cause)
        return True


def install(level: int = logging.WARNING) -> OncePerCause:
    """Root logging at `level` with one stderr handler that filters repeats; returns the filter (to count drops)."""
    root = logging.getLogger()
    once = OncePerCause()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        handler.addFilter(once)
    return once
