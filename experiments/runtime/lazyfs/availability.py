"""Is FUSE usable here? One check with an error that says what is missing and how to get it."""

from __future__ import annotations

import ctypes.util
import os
import shutil

INSTALL_HINT = "run `bash scripts/ensure-fuse.sh` (installs Debian's fuse3 and libfuse3-3 as root)"


class FuseUnavailable(RuntimeError):
    """FUSE cannot be used on this machine; the message names the missing part."""


def fuse_problem() -> str | None:
    """What keeps a FUSE mount from working here, or None when nothing does."""
    if shutil.which("fusermount3") is None:
        return f"fusermount3 not found: Debian package fuse3 is missing; {INSTALL_HINT}"
    if ctypes.util.find_library("fuse3") is None:
        return f"libfuse3.so.3 not found: Debian package libfuse3-3 is missing; {INSTALL_HINT}"
    if not os.path.exists("/dev/fuse"):
        return (
            "/dev/fuse does not exist: load the kernel module (modprobe fuse) or, in a container, "
            "run it with --device /dev/fuse --cap-add SYS_ADMIN"
        )
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user: run as root or add the user to group fuse"
    return None


def require_fuse() -> None:
    problem = fuse_problem()
    if problem is not None:
        raise FuseUnavailable(problem)
