"""`diplom switch` talking to a running `diplom up`: a request file and SIGUSR1.

The processes belong to `diplom up` (it stops them on Ctrl-C), so the switch
runs there too: `diplom switch` writes `switch-request.json` into the
stack's workdir, signals the `diplom up` pid named in `stack.json`, and waits
for `switch-result.json` answering that request.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from experiments.runtime.migration import Queue, current_queue, switch_queue
from experiments.runtime.nats.external import ExternalNats
from experiments.runtime.nats.provider import NatsServer
from experiments.runtime.stack import Stack

STATE = "stack.json"
REQUEST = "switch-request.json"
RESULT = "switch-result.json"
SWITCH_SIGNAL = signal.SIGUSR1


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    os.chmod(tmp, 0o600)  # it names the admin token
    tmp.replace(path)


class SwitchNats:
    """The stack's NATS, started on first need: a memory stack has none running until a switch to nats."""

    def __init__(self, server: NatsServer, running: bool = False) -> None:
        self.server = server
        self.running = running

    def ensure(self) -> NatsServer:
        if not self.running:
            self.server.start()
            self.running = True
        return self.server

    @property
    def url(self) -> str | None:
        return self.server.url if self.running else None

    def stop(self) -> None:
        if isinstance(self.server, ExternalNats):
            self.server.close()  # the user's servers stay as they were
        elif self.running:
            self.server.stop()
        self.running = False


def write_state(workdir: Path, stack: Stack, nats: SwitchNats) -> None:
    """What a `diplom switch` (or a person with curl) needs to know about this running stack."""
    _write(
        workdir / STATE,
        {
            "pid": os.getpid(),
            "queue": current_queue(stack),
            "gateway": stack.gateway_url,
            "ingest": stack.ingest.url,
            "processors": [p.url for p in stack.processors],
            "nats": nats.url,
            "admin_token": stack.admin_token,
        },
    )


def serve_request(workdir: Path, stack: Stack, nats: SwitchNats) -> str:
    """Run the switch that `switch-request.json` asks for (in `diplom up`); write the result; return a line."""
    request = orjson.loads((workdir / REQUEST).read_bytes())
    to: Queue = "nats" if request["to"] == "nats" else "memory"
    result: dict[str, Any] = {"id": request["id"], "ok": False}
    try:
        if current_queue(stack) == to:
            raise ValueError(f"the stack already runs on {to}")
        server = nats.ensure() if to == "nats" else nats.server
        reports = switch_queue(stack, to, server, naive=bool(request.get("naive")), keep_ports=True)
        result.update(ok=True, reports=[r.summary() for r in reports])
    except Exception as exc:  # reported to the caller; `diplom up` keeps running
        result["error"] = f"{type(exc).__name__}: {exc}"
    _write(workdir / RESULT, result)
    write_state(workdir, stack, nats)
    return "; ".join(result.get("reports", [])) or str(result.get("error"))


def request_switch(workdir: Path, to: str, naive: bool, timeout: float) -> dict[str, Any]:
    """From `diplom switch`: ask the running `diplom up` of `workdir` to switch; its result."""
    try:
        state = orjson.loads((workdir / STATE).read_bytes())
    except FileNotFoundError:
        raise RuntimeError(f"no running `diplom up` in {workdir} ({STATE} missing)") from None
    request_id = uuid.uuid4().hex
    with contextlib.suppress(FileNotFoundError):
        (workdir / RESULT).unlink()
    _write(workdir / REQUEST, {"id": request_id, "to": to, "naive": naive})
    try:
        os.kill(int(state["pid"]), SWITCH_SIGNAL)
    except ProcessLookupError:
        raise RuntimeError(f"`diplom up` (pid {state['pid']}) is not running") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, orjson.JSONDecodeError):
            result: dict[str, Any] = orjson.loads((workdir / RESULT).read_bytes())
            if result.get("id") == request_id:
                return result
        time.sleep(0.2)
    raise TimeoutError(f"no answer from `diplom up` within {timeout}s")
