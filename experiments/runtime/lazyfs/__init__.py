"""A lazy file system for power-loss experiments: writes not fsynced are lost on command.

- `pending` : the pending layer (no FUSE), what is durable vs what reads see
- `ops`     : the FUSE passthrough on top of it (what passes straight through: its docstring)
- `daemon`  : the mount's own process (control socket, writeback timer, parent watch)
- `control` : the control protocol (lose / flush / report / ping on a Unix socket)
- `mount`   : `LazyFS`, the handle the harness uses (start, lose, flush, stop)
"""

from experiments.runtime.lazyfs.availability import FuseUnavailable, fuse_problem, require_fuse
from experiments.runtime.lazyfs.mount import LazyFS, LazyFSNotReady, is_mounted

__all__ = ["FuseUnavailable", "LazyFS", "LazyFSNotReady", "fuse_problem", "is_mounted", "require_fuse"]
