"""`wrk` (C, epoll) against the gateway with the same body as our generator: an independent load generator.

wrk is closed loop like our generator's throughput windows, so the two
accepted rates are comparable; it counts non-2xx answers separately, and
only 2xx count here (a 429 or 503 is not throughput).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.runtime.paths import REPO

ENSURE = REPO / "scripts" / "ensure-wrk.sh"
_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_P99 = re.compile(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)  # --latency's distribution
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    non_2xx: int
    seconds: float
    p99_ms: float | None = None  # with `latency=True` (wrk --latency): every answer's, 2xx or not

    @property
    def rate(self) -> float:
        """2xx answers per second."""
        return (self.requests - self.non_2xx) / self.seconds if self.seconds > 0 else 0.0


def ensure() -> None:
    """wrk on PATH, installed by the project's script if missing (raises with the script's reason)."""
    if shutil.which("wrk") is None:
        subprocess.run(["bash", str(ENSURE)], check=True, timeout=300)


def lua_script(body: bytes) -> str:
    """The request wrk sends: POST with this exact JSON body."""
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {_lua_string(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def parse(output: str) -> WrkResult:
    """Requests, non-2xx and the measured seconds from wrk's summary (ValueError if it is not one)."""
    m = _REQUESTS.search(output)
    if m is None:
        raise ValueError(f"not a wrk summary: {output[-400:]!r}")
    non = _NON_2XX.search(output)
    p99 = _P99.search(output)
    return WrkResult(
        int(m.group(1)),
        int(non.group(1)) if non else 0,
        float(m.group(2)) * _UNIT_S[m.group(3)],
        float(p99.group(1)) * _UNIT_S[p99.group(2)] * 1e3 if p99 else None,
    )


def accepted_rate(
    url: str,
    body: bytes,
    connections: int,
    duration: float,
    latency: bool = False,
    prefix: Sequence[str] = (),
) -> WrkResult:
    """One wrk thread (the machine has 2 cores; the stack needs them) for `duration` s.

    `latency`: also the p99 (wrk --latency). `prefix`: a command wrk runs
    under, e.g. `ip netns exec NAME` to drive a server inside a namespace.
    """
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(lua_script(body))
        out = subprocess.run(
            [*prefix, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "5s",
             *(["--latency"] if latency else []), "-s", str(script), url],
            capture_output=True, text=True, timeout=duration + 30, check=True,
        )  # fmt: skip
    return parse(out.stdout)
