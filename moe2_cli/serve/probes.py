"""The probe listener (``moe2 serve --probe-port``): ``/healthz``, ``/readyz`` and ``/metrics`` on
a port of their own, served by a second uvicorn server on a thread with its own event loop (as
an admin port is), while the main port keeps answering them too.

On the main port the probes share the event loop with every client: under a burst of thousands
of connections, a few loop turns spent accepting them and answering 503s last hundreds of
milliseconds, and a probe waiting behind them is late although it is answered from memory. A
thread blocked on a socket of its own is handed the interpreter lock within the switch interval
(5 ms) of a probe arriving, however busy the main loop is.

The answers are the main port's (:meth:`Front.probe_answer`), from the same readiness and
metrics, read from this thread while the main loop changes them: metric families are copied
under their lock, and readiness reads attributes and dicts the loop replaces or changes in
place, never iterating one that can grow. The listener starts just before the main server and
stops after it: during the drain, when the main port no longer accepts connections, it still
answers (``/readyz`` 503 "draining", read from the same flag as the main port's).
"""

from __future__ import annotations

import socket
import threading

import uvicorn
from starlette.types import Receive, Scope, Send

from moe2_cli.serve.app import PROBES, Front, discard_body, error

MAX_CONNECTIONS = 64  # probers are few; past this uvicorn answers 503 rather than hold more sockets
STOP_GRACE_S = 1  # probe answers are immediate: at the stop nothing is left to wait for


class ProbeApp:
    """The probes of ``front`` and nothing else: any other path is a 404."""

    def __init__(self, front: Front):
        self.front = front

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = self.front.probe_answer(scope)
        if reply is None:
            reply = error(404, f"{scope['path']} is not served on the probe port: it serves GET "
                          f"{', '.join(PROBES)}", "invalid_request_error")
        if not await discard_body(receive, self.front.drain_cap):
            reply.headers["Connection"] = "close"
        await reply(scope, receive, send)


class _Server(uvicorn.Server):
    """uvicorn's server, saying when it is listening (or has failed to start)."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.up = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.up.set()


class ProbeListener:
    """The probe port's server on a thread of its own. Off the main thread uvicorn installs no
    signal handlers: the main server's stop, not a signal, ends it."""

    def __init__(self, front: Front, sock: socket.socket, protocol: type):
        config = uvicorn.Config(ProbeApp(front), log_level="warning", access_log=False, lifespan="off", ws="none",
                                http=protocol, limit_concurrency=MAX_CONNECTIONS,
                                timeout_graceful_shutdown=STOP_GRACE_S)
        self.server, self.sock = _Server(config), sock
        self.thread = threading.Thread(target=self._run, name="moe2-probes", daemon=True)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def start(self) -> None:
        """Start serving; returns once the port answers (RuntimeError if it could not start)."""
        self.thread.start()
        self.server.up.wait()
        if not self.server.started:
            raise RuntimeError(f"the probe listener on port {self.port} did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.server.up.set()  # a server that failed before its startup must not leave start() waiting
