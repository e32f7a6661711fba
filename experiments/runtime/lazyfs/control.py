"""The control interface of a mounted lazy file system: a Unix socket, one JSON line per command.

Commands (send the word and a newline, read one JSON line back):
`lose` -> {"lost_bytes": n}: drop every pending write, the power loss;
`flush` -> {"written_bytes": n}: make every pending write durable;
`report` -> {"pending_bytes": n, "pending_files": k};
`ping` -> {"ok": true}.
From a shell: `echo report | socat - UNIX-CONNECT:SOCKET` (or python's socket).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

COMMANDS = ("lose", "flush", "report", "ping")


def send_command(sock_path: str | Path, command: str, timeout: float = 10.0) -> dict[str, Any]:
    """Send one command to the daemon at `sock_path` and return its answer."""
    if command not in COMMANDS:
        raise ValueError(f"lazyfs command {command!r}: expected one of {', '.join(COMMANDS)}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(command.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    answer: dict[str, Any] = json.loads(buf)
    if "error" in answer:
        raise RuntimeError(f"lazyfs {command}: {answer['error']}")
    return answer
