"""Garbage-collector settings every service applies once it has started (GC_FREEZE, GC_GEN0_THRESHOLD).

A service's start-up (imports, FastAPI's routes and models, pydantic's
validators, the clients) leaves ~75 k objects the collector tracks. A full
collection walks all of them: 40-60 ms of CPU in the gateway and in ingest on
these machines, one to three times per 4 s at 500 msg/s. `gc.freeze()` after
start-up moves them out of its reach (they are never garbage): a full
collection then costs well under a millisecond. Off by default: on a shared
2-core machine the client p99 at half rate did not move with it alone
(`diplom bench-tail --levers freeze`), so it stays a setting to measure.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol


class GcOptions(Protocol):
    gc_freeze: bool
    gc_gen0_threshold: int


def apply(options: GcOptions) -> None:
    """Freeze what start-up left (collected first, so no garbage is frozen) and set the gen0 threshold."""
    if options.gc_gen0_threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(options.gc_gen0_threshold, gen1, gen2)
    if options.gc_freeze:
        gc.collect()
        gc.freeze()


Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[None]]


def after_start(lifespan: Lifespan, options: GcOptions) -> Lifespan:
    """`lifespan` with `apply(options)` once its start-up part has run."""

    @contextlib.asynccontextmanager
    async def wrapped(app: Any) -> AsyncIterator[None]:
        async with lifespan(app):
            apply(options)
            yield

    return wrapped
