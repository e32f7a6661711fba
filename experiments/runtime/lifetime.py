"""`with` for whatever the harness starts: started on entry, always closed on exit, a failed start included."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Managed:
    """Start in `with`, close always, so nothing it made outlives the block (not even after a failed start).

    Subclasses give `start` and `close`; `close` must be safe to call on
    something that never started, or only half did.
    """

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()  # a failed start leaves nothing behind
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
