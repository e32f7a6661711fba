"""Whether this run is CI: there, tests that need Docker or FUSE fail instead of skipping."""

from __future__ import annotations

import os


def ci_is_set() -> bool:
    """CI=true (or any value but empty, 0, false, no), as scripts/test.sh reads it."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
