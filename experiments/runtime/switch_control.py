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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from experiments.runtime.broker import BrokerServer
from experiments.runtime.migration import QUEUES, current_queue, switch_queue
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


class StandbyBroker:
    """A broker of the stack, started on first need: a memory stack has none running until a switch to one."""

    def __init__(self, server: BrokerServer, running: bool = False) -> None:
        self.server = server
        self.running = running

    def ensure(self) -> BrokerServer:
        if not self.running:
            self.server.start()
            self.running = True
        return self.server

    @property
    def address(self) -> str | None:
        """Where clients reach it (NATS url, Kafka bootstrap servers); None while not running."""
        if not self.running:
            return None
        return str(getattr(self.server, "url", None) or getattr(self.server, "bootstrap_servers", ""))

    def stop(self) -> None:
        """Stop it for good (its containers and temporary store go too); the user's external servers stay."""
        if self.running or self.server.kind == "external":
            self.server.close()  # external: only our connection to them
        self.running = False


Brokers = Mapping[str, StandbyBroker]
"""Queue family (nats, kafka) -> the stack's broker of that family, running or on standby."""


def stop_all(brokers: Brokers) -> None:
    for broker in brokers.values():
        broker.stop()


def write_state(workdir: Path, stack: Stack, brokers: Brokers) -> None:
    """What a `diplom switch` (or a person with curl) needs to know about this running stack."""
    _write(
        workdir / STATE,
        {
            "pid": os.getpid(),
            "queue": current_queue(stack),
            "gateway": stack.gateway_url,
            "ingest": stack.ingest.url,
            "processors": [p.url for p in stack.processors],
            **{queue: broker.address for queue, broker in brokers.items()},
            "admin_token": stack.admin_token,
        },
    )


def serve_request(workdir: Path, stack: Stack, brokers: Brokers) -> str:
    """Run the switch that `switch-request.json` asks for (in `diplom up`); write the result; return a line."""
    request = orjson.loads((workdir / REQUEST).read_bytes())
    to = str(request["to"])
    result: dict[str, Any] = {"id": request["id"], "ok": False}
    try:
        if to not in QUEUES:
            raise ValueError(f"queue {to!r}: expected one of {', '.join(QUEUES)}")
        if current_queue(stack) == to:
            raise ValueError(f"the stack already runs on {to}")
        server = brokers[to].ensure() if to in brokers else None
        reports = switch_queue(stack, to, server, naive=bool(request.get("naive")), keep_ports=True)
        result.update(ok=True, reports=[r.summary() for r in reports])
    except Exception as exc:  # reported to the caller; `diplom up` keeps running
        result["error"] = f"{type(exc).__name__}: {exc}"
    _write(workdir / RESULT, result)
    write_state(workdir, stack, brokers)
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
