"""Entry point of the services image: `serve.py gateway|ingest|processor`, `--health` or `--request`.

The image's command picks the service; this execs uvicorn with the same flags
as `experiments/runtime/stack.py` (uvloop, httptools, no access log, graceful
shutdown long enough for the processor to drain), so uvicorn is PID 1 and
gets the engine's SIGTERM itself.

Environment: SERVICE (when no argument is given), HOST (default 0.0.0.0; the
gateway, told the same HOST, refuses to start beyond loopback without API_KEY),
PORT (default: the spec's port of the service), LOG_LEVEL (default info).

`serve.py --health` is the image's healthcheck: GET http://127.0.0.1:<port>/health,
exit 0 on 200 and 1 otherwise (the processor answers 503 while its backend is
down, so "healthy" means "connected to its queue"). The port is read from
PID 1's command line (uvicorn's `--port`), so the check follows whatever port
the service was given. Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

APPS = {
    "gateway": ("services.gateway:create_app", 8080),
    "api-gateway": ("services.gateway:create_app", 8080),
    "ingest": ("services.ingest:create_app", 8081),
    "processor": ("services.processor:create_app", 8082),
}


def _service(args: list[str]) -> str:
    name = args[0] if args else os.environ.get("SERVICE", "")
    if name not in APPS:
        sys.exit(f"serve.py: name a service: {' | '.join(APPS)} (argument or SERVICE), got {name!r}")
    return name


def _port(name: str) -> int:
    return int(os.environ.get("PORT") or APPS[name][1])


def _serving_port() -> int:
    """The `--port` of the uvicorn that runs as PID 1 in this container."""
    try:
        argv = Path("/proc/1/cmdline").read_bytes().split(b"\0")
        return int(argv[argv.index(b"--port") + 1])
    except (OSError, ValueError, IndexError):
        return int(os.environ.get("PORT") or 8080)


def health() -> int:
    url = f"http://127.0.0.1:{_serving_port()}/health"
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1: never a proxy
        with opener.open(url, timeout=float(os.environ.get("HEALTH_TIMEOUT", "2"))) as resp:
            ok = resp.status == 200
    except urllib.error.HTTPError as exc:
        print(f"{url}: HTTP {exc.code} {exc.read()[:300]!r}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def request(args: list[str]) -> int:
    """`--request METHOD PATH [BODY]`: call this container's service on 127.0.0.1, print the body.

    How the scripts reach a service whose port is not published (the closed
    stack: `docker exec <container> python /app/serve.py --request GET /stats`).
    /admin/* gets the container's ADMIN_TOKEN as a bearer token. Exit 0 on a
    2xx; otherwise the status and body go to stderr and the exit is 1.
    """
    if len(args) not in (2, 3) or not args[1].startswith("/"):
        print("usage: serve.py --request METHOD /PATH [JSON-BODY]", file=sys.stderr)
        return 2
    method, path = args[0].upper(), args[1]
    data = args[2].encode() if len(args) == 3 else None
    req = urllib.request.Request(f"http://127.0.0.1:{_serving_port()}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    token = os.environ.get("ADMIN_TOKEN")
    if token and path.startswith("/admin/"):
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=float(os.environ.get("REQUEST_TIMEOUT", "10"))) as resp:
            sys.stdout.write(resp.read().decode())
        return 0
    except urllib.error.HTTPError as exc:
        print(f"{method} {path} -> HTTP {exc.code}: {exc.read()[:500].decode(errors='replace')}", file=sys.stderr)
    except OSError as exc:
        print(f"{method} {path} -> {exc}", file=sys.stderr)
    return 1


def serve(args: list[str]) -> None:
    name = _service(args)
    app, _ = APPS[name]
    # The gateway reads HOST too: beyond loopback it refuses to start without API_KEY.
    host = os.environ["HOST"] = os.environ.get("HOST", "0.0.0.0")
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", app,
        "--host", host, "--port", str(_port(name)),
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", os.environ.get("LOG_LEVEL", "info").lower(),
        "--timeout-graceful-shutdown", "15",
    ]  # fmt: skip
    os.execv(sys.executable, cmd)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--health"]:
        sys.exit(health())
    if args[:1] == ["--request"]:
        sys.exit(request(args[1:]))
    serve(args)


if __name__ == "__main__":
    main()
