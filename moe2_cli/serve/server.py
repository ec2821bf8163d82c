"""Run the proxy under uvicorn on a socket bound here, so a busy port is a clean error."""

from __future__ import annotations

import math
import signal
import socket

import uvicorn

from moe2_cli.errors import UsageError
from moe2_cli.serve.app import build_app
from moe2_cli.serve.proxy import Proxy

KEEP_ALIVE_S = 30


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it. Without it a reply written in two parts (headers, body)
    # waits for the client's delayed ACK: about 40 ms on every request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
    sock.set_inheritable(True)
    return sock


def grace_seconds(proxy: Proxy) -> int:
    """Long enough for a request in flight when SIGTERM arrives to finish: its slowest chain
    of expert calls (the first round and every fallback), plus a margin."""
    slowest = max((t.timeout_s for t in proxy.targets.values()), default=0.0)
    return math.ceil(slowest * (1 + proxy.fallbacks)) + 5


def serve(proxy: Proxy, sock: socket.socket, *, api_key: str | None, max_body: int) -> None:
    """Serve until SIGTERM or SIGINT; uvicorn then stops accepting and lets requests in flight finish."""
    app = build_app(proxy, api_key=api_key, max_body=max_body)
    # Idle client connections are kept longer than clients keep them (httpx, hence the openai
    # package, drops its own after 5 s): a server closing one as the client reuses it loses a request.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=grace_seconds(proxy), timeout_keep_alive=KEEP_ALIVE_S)
    # uvicorn re-raises SIGTERM once it has stopped gracefully, which would end the process as
    # killed; a handler of our own turns that into the clean exit (status 0) it is.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
