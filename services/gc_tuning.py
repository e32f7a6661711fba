"""Garbage-collector settings every service applies once it has started.

A service's start-up (imports, FastAPI's routes and models, pydantic's
validators, the backend's client) leaves a few hundred thousand long-lived
objects. CPython's full collection walks all of them, tens of ms on these
machines, in the middle of a request: that is a client's p99. `gc.freeze()`
after start-up moves them out of the collector's reach (they are never
garbage), and a higher gen0 threshold makes young collections rarer.
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
