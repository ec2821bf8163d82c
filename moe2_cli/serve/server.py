"""Run the proxy under uvicorn on a socket bound here, so a busy port is a clean error.

The server holds under load: admission control bounds the work (:mod:`.admission`), uvicorn's
``limit_concurrency`` is a backstop far above it, a request's headers must arrive within
:data:`HEADER_TIMEOUT_S` and fit in ``MAX_HEADER_BYTES`` (the parser's buffer; the app sends a
431), and SIGTERM or SIGINT drains: new requests are refused, the ones in flight get ``grace_s``
seconds, and any still running then are answered with a 503 and make the exit status
:data:`EXIT_CUT`.
"""

from __future__ import annotations

import asyncio
import gc
import math
import resource
import signal
import socket
from dataclasses import dataclass
from types import FrameType

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from moe2_cli.errors import Moe2Error, UsageError
from moe2_cli.serve import DEFAULT_MAX_BODY
from moe2_cli.serve.admission import Admission, Bounds
from moe2_cli.serve.app import MAX_HEADER_BYTES, build_app, unavailable_bytes, whole_completion
from moe2_cli.serve.probes import ProbeListener
from moe2_cli.serve.proxy import Proxy

KEEP_ALIVE_S = 30
HEADER_TIMEOUT_S = 10  # a connection's first request, or a later one once begun, must finish its headers
CONNECTIONS_FLOOR = 4096  # uvicorn's backstop never refuses below this many connections
FD_RESERVE = 64  # file descriptors left for upstream connections, logs and the gate cache
ACCEPT_BATCH = 32  # connections accepted per event-loop turn
LISTEN_BACKLOG = 4096  # connections the kernel holds until they are accepted
IDLE_CLOSE_S = 1.0  # at the stop, how long a connection between requests is left open
CUT_MARGIN_S = 5  # after the grace, time to write the 503s before uvicorn cancels what is left
EXIT_CUT = 75  # EX_TEMPFAIL: the drain had to cut requests; retrying them elsewhere is safe


class DrainCut(Moe2Error):
    exit_code = EXIT_CUT


@dataclass(frozen=True)
class Options:
    """How the server holds: the admission bounds, the drain's grace, the client key and the
    request limits."""

    bounds: Bounds
    grace_s: float
    api_key: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    header_timeout_s: float = HEADER_TIMEOUT_S


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
    """Long enough for a request in flight when SIGTERM arrives to finish: its deadline (every
    fallback included), plus a margin."""
    return math.ceil(proxy.deadline_s or 0.0) + 5


def warm_up(proxy: Proxy) -> None:
    """What the first request would otherwise pay, paid before the socket listens: one routing
    call per category (it loads the router's lazy imports: scikit-learn, scipy, the featuriser)
    and each expert server's client."""
    proxy.plan.warm()
    for target in proxy.targets.values():
        proxy.pools.client(target)
    # What start-up made (the router, numpy, scikit-learn) lives as long as the process; a full
    # collection would walk all of it, a pause of about 150 ms on the event loop, every time.
    gc.collect()
    gc.freeze()


def backstop(bounds: Bounds) -> int:
    """uvicorn's ``limit_concurrency``: it counts open connections, idle ones included, and its
    503 carries no ``Retry-After``, so it sits far above the admission bounds and below the file
    descriptor limit (past which connections would not even be accepted)."""
    wanted = max(CONNECTIONS_FLOOR, 8 * (bounds.max_inflight + bounds.max_queue))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(bounds.max_inflight + bounds.max_queue + 1, min(wanted, soft - FD_RESERVE))


class HeaderDeadline(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol with a deadline on headers: from a connection's opening, or the
    first byte of a later request on it, to the end of that request's headers. A slow or silent
    client cannot hold a connection (and a file descriptor) for ever."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    admission: Admission | None = None
    _deadline: asyncio.TimerHandle | None = None
    _awaited: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None and self._refused_at_once(data):
            return
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # a new request begins on a kept-alive connection
        super().data_received(data)
        if self._deadline is not None and self.cycle is not self._awaited:  # its headers are in
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """Called as the server stops. A connection between requests may have one on its way,
        or already here and unread, and closing it now would reset that request: it is left open
        a moment, so the drain answers such a request with a 503, then closed if still idle."""
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(IDLE_CLOSE_S, self._close_if_idle)
        else:
            super().shutdown()

    def _close_if_idle(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            super().shutdown()

    def _refused_at_once(self, data: bytes) -> bool:
        """A new connection's completion request with no slot and no queue place is answered
        503 here, before it is parsed and given a task: under a burst of thousands, that work,
        not the answer, is what would hold the event loop (and /healthz) back."""
        if self.admission is None or not whole_completion(data):
            return False
        reason = self.admission.refuse_at_once()
        if reason is None:
            return False
        self.transport.write(unavailable_bytes(reason))
        self.transport.close()
        return True

    def _arm(self) -> None:
        self._awaited = self.cycle  # the headers are in once uvicorn starts a new request cycle
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self.cycle is self._awaited and not self.transport.is_closing():
            self.transport.close()


class ProbeProtocol(HeaderDeadline):
    """The probe listener's: the header deadline, no admission, and at the stop a connection
    between probes is closed at once (a prober reconnects; nothing on it is left to answer)."""

    def shutdown(self) -> None:
        super(HeaderDeadline, self).shutdown()  # uvicorn's own, past the idle delay


class DrainingServer(uvicorn.Server):
    """uvicorn's server; its exit signal also starts the admission drain. With a probe listener
    (:mod:`.probes`), that starts once this server has and stops after it."""

    def __init__(self, config: uvicorn.Config, proxy: Proxy, admission: Admission, grace_s: float,
                 probes: ProbeListener | None = None):
        super().__init__(config)
        self.proxy, self.admission, self.grace_s, self.probes = proxy, admission, grace_s, probes
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        if self.probes is not None:
            # First, so that the probes answer (/readyz "starting") by the time this server does;
            # the wait is milliseconds, before this loop has anything to serve.
            self.probes.start()
        try:
            await super().startup(sockets=sockets)
        except BaseException:  # a failed start (uvicorn exits) is followed by no shutdown
            self._stop_probes()
            raise
        # asyncio accepts up to its backlog argument of connections per event-loop turn, and
        # then works through all of them before reading anything else: a burst of thousands
        # would hold /healthz back for a second. The argument stays small (ACCEPT_BATCH);
        # the kernel's queue of connections waiting to be accepted is set long here.
        for sock in sockets or ():
            sock.listen(LISTEN_BACKLOG)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets=sockets)
        finally:
            self._stop_probes()

    def _stop_probes(self) -> None:
        if self.probes is not None:
            self.probes.stop()  # blocks this loop briefly: it has nothing left to serve

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.loop is not None and not self.should_exit:
            self.loop.call_soon_threadsafe(self.admission.drain, self.grace_s)
            self.loop.call_soon_threadsafe(self.proxy.draining)
        super().handle_exit(sig, frame)


def build_server(proxy: Proxy, options: Options, probe_sock: socket.socket | None = None) -> DrainingServer:
    """The server; with ``probe_sock``, a probe listener on it too."""
    admission = Admission(options.bounds)
    app = build_app(proxy, api_key=options.api_key, max_body=options.max_body, admission=admission)
    # Idle client connections are kept longer than clients keep them (httpx, hence the openai
    # package, drops its own after 5 s): a server closing one as the client reuses it loses a request.
    protocol = type("HTTPProtocol", (HeaderDeadline,), {"header_timeout_s": options.header_timeout_s,
                                                        "admission": admission})
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", http=protocol,
                            timeout_graceful_shutdown=math.ceil(options.grace_s) + CUT_MARGIN_S,
                            timeout_keep_alive=KEEP_ALIVE_S, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                            limit_concurrency=backstop(options.bounds), backlog=ACCEPT_BATCH)
    probes = None
    if probe_sock is not None:
        prober = type("ProbeHTTPProtocol", (ProbeProtocol,), {"header_timeout_s": options.header_timeout_s})
        probes = ProbeListener(app, probe_sock, prober)
    return DrainingServer(config, proxy, admission, options.grace_s, probes)


def serve(proxy: Proxy, sock: socket.socket, options: Options, probe_sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain; :class:`DrainCut` if requests had to be cut.
    With ``probe_sock``, the probes are answered on it too, from a thread of their own."""
    server = build_server(proxy, options, probe_sock)
    # uvicorn re-raises the signal once it has stopped gracefully, which would end the process
    # as killed; handlers of our own turn that into the clean exit it is.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    cut = server.admission.cut_count
    if cut:
        raise DrainCut(f"{cut} request(s) still running {options.grace_s:g} s after the stop signal were "
                       f"answered with a 503")
