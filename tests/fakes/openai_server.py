"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and local demos.

It speaks ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``
(streaming and not), serves any number of model ids, and answers each with a configured delay
and answer, honouring ``tools``, ``n``, ``logprobs`` and ``max_tokens`` (see
:mod:`tests.fakes.openai_replies`). A model can be made to fail with any HTTP status, to hang
before its first byte, to stall after its first token, to send a malformed reply, to drip its
reply a byte at a time, to send a reply of any size (never held in memory) or one nested
deeper than any parser allows; a
``temperature`` above 2 is refused with OpenAI's 400. A closed port (``unused_url``) stands in
for a server that refuses connections. It is test code on a real socket, not a mock of the client.

    with FakeOpenAI({"m1": FakeModel(answer="B", delay_s=0.02)}) as server:
        httpx.post(server.url + "/v1/chat/completions", json={...})

Run it by hand to try ``moe2 serve`` or ``moe2 measure`` without GPUs::

    python -m tests.fakes.openai_server --port 8081 --model qwen=0.05:B --model llama=0.08:C [--token-delay 0.01]
        [--fail qwen=drip] [--drip 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes import openai_replies as replies

Answer = Callable[[str], str]


@dataclass
class FakeModel:
    """How one served model behaves. ``answer`` is the reply, or a function of the prompt;
    ``delay_s`` passes before the first token and ``token_delay_s`` after each token; ``fail``
    is None, an HTTP status ("500", "400", ...), "hang" (before the first byte), "stall" (after
    the first token), "garbage" (a 200 that is not a completion), "drip" (a 200 whose body comes
    one byte every ``drip_s`` seconds, for an hour), "huge" (a 200 of ``huge_bytes`` bytes,
    generated as it is sent), "deep" (a 200 whose JSON nests 100,000 deep), "error200" (an OpenAI
    error object sent with status 200), "unterminated" (a stream that stops after its last token,
    with no finish_reason and no [DONE]) or "malformed" (a stream with ``bad_chunk`` as the data
    of its second event). ``uses_tools``: answer offered tools with a call; ``ignores_n``: one
    choice whatever ``n`` asks (as some servers do); ``ignores_stream``: a whole JSON completion
    even when a stream is asked for; ``hold``: a stream waits after its first token until the test
    sets this event; ``gate``: every reply, whole or streamed, waits before its first byte until
    the test sets this event; ``reply_with``: the test builds every reply itself from the body."""

    answer: str | Answer = "ok"
    delay_s: float = 0.0
    fail: str | None = None
    token_delay_s: float = 0.0
    uses_tools: bool = True
    ignores_n: bool = False
    hold: threading.Event | None = None
    gate: threading.Event | None = None
    drip_s: float = 1.0
    huge_bytes: int = 1 << 30
    ignores_stream: bool = False
    bad_chunk: str = "[]"
    reply_with: Callable[[dict], Response] | None = None

    def reply(self, prompt: str) -> str:
        return self.answer(prompt) if callable(self.answer) else self.answer


@dataclass(frozen=True)
class Call:
    model: str
    prompt: str
    stream: bool
    started: float
    body: dict
    request_id: str | None


def unused_url() -> str:
    """A loopback URL on which nothing listens: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _text(content) -> str:
    if isinstance(content, list):  # the parts form of the chat API
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _prompt(body: dict) -> str:
    """The last user message, else the system text (a system-only conversation), else ``prompt``."""
    messages = body.get("messages") or []
    for role in ("user", "system"):
        for message in reversed(messages):
            if message.get("role") == role:
                return _text(message.get("content"))
    return str(body.get("prompt") or "")


def _refusal(body: dict) -> JSONResponse | None:
    """OpenAI's own 400 for an out-of-range temperature: the client's mistake, not the model's."""
    temperature = body.get("temperature")
    if isinstance(temperature, (int, float)) and temperature > 2:
        message = (f"Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got "
                   f"{temperature} instead.")
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": "temperature",
                                       "code": "decimal_above_max_value"}}, status_code=400)
    return None


class FakeOpenAI:
    """The server; use as a context manager. ``calls`` records every completion request."""

    def __init__(self, models: dict[str, FakeModel], *, api_key: str | None = None, port: int = 0):
        self.models = models
        self.api_key = api_key
        self.calls: list[Call] = []
        self._lock = threading.Condition()
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ the HTTP app

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/models", self._list_models, methods=["GET"]),
                                 Route("/v1/chat/completions", self._complete, methods=["POST"]),
                                 Route("/v1/completions", self._complete, methods=["POST"])])

    def _refused(self, request: Request) -> JSONResponse | None:
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return JSONResponse({"error": {"message": "invalid api key", "type": "auth"}}, status_code=401)

    async def _list_models(self, request: Request) -> JSONResponse:
        refused = self._refused(request)
        if refused:
            return refused
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"}
                                                        for m in self.models]})

    async def _complete(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused:
            return refused
        body = json.loads(await request.body())
        name = body.get("model")
        model = self.models.get(name)
        if model is None:
            return JSONResponse({"error": {"message": f"model {name!r} not found", "type": "not_found"}},
                                status_code=404)
        prompt = _prompt(body)
        with self._lock:
            self.calls.append(Call(model=name, prompt=prompt, stream=bool(body.get("stream")),
                                   started=time.monotonic(), body=body,
                                   request_id=request.headers.get("x-request-id")))
            self._lock.notify_all()
        if model.gate is not None:
            await asyncio.to_thread(model.gate.wait)
        if model.reply_with is not None:
            return model.reply_with(body)
        failed = await self._failure(model, body)
        if failed is not None:
            return failed
        await asyncio.sleep(model.delay_s)
        if model.ignores_n:
            body = {**body, "n": 1}
        planned = replies.plan(body, name, prompt, model.reply(prompt), model.uses_tools)
        if body.get("stream") and not model.ignores_stream:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(self._chunks(planned, model, usage), media_type="text/event-stream")
        await asyncio.sleep(model.token_delay_s * len(planned.tokens))
        return JSONResponse(replies.whole(planned))

    async def _failure(self, model: FakeModel, body: dict) -> Response | None:
        if model.fail == "hang" or (model.fail == "stall" and not body.get("stream")):
            await asyncio.sleep(3600)
        if model.fail == "garbage":
            return PlainTextResponse("<html>gateway says hello</html>")
        if model.fail == "error200":
            return JSONResponse({"error": {"message": "model overloaded", "type": "server_error", "param": None,
                                           "code": None}})
        if model.fail in _HOSTILE:
            media = "text/event-stream" if body.get("stream") else "application/json"
            return StreamingResponse(_HOSTILE[model.fail](model, bool(body.get("stream"))), media_type=media)
        if model.fail is not None and model.fail.isdigit():
            return JSONResponse({"error": {"message": f"the fake says {model.fail}", "type": "fake_error",
                                           "param": None, "code": None}}, status_code=int(model.fail))
        return _refusal(body)

    async def _chunks(self, planned: replies.Planned, model: FakeModel, include_usage: bool):
        for line in replies.opening(planned):
            yield line
        if model.fail == "malformed":
            yield f"data: {model.bad_chunk}\n\n"
        for i, step in enumerate(replies.pieces(planned)):
            for line in step:
                yield line
            if model.fail == "stall" and i == 0:
                await asyncio.sleep(3600)
            if model.hold is not None and i == 0:
                await asyncio.to_thread(model.hold.wait)
            await asyncio.sleep(model.token_delay_s)
        if model.fail == "unterminated":
            return
        for line in replies.closing(planned, include_usage):
            yield line

    def wait_for_calls(self, count: int, timeout_s: float = 30) -> bool:
        """Block until ``count`` completion requests have arrived; False if they did not in time."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self.calls) >= count, timeout=timeout_s)

    # ------------------------------------------------------------------ start and stop

    def __enter__(self) -> FakeOpenAI:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this: without it, each streamed chunk after the headers
        # waits for the client's delayed ACK (~40 ms), which would pollute measured latency.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", self._port))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app(), log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)


async def _drip(model: FakeModel, stream: bool):
    """A reply that never ends in time: one byte every ``drip_s`` seconds."""
    for byte in ('data: {"choices": [' if stream else '{"choices": [') + " " * 3600:
        yield byte
        await asyncio.sleep(model.drip_s)


async def _huge(model: FakeModel, stream: bool):
    """``huge_bytes`` of one JSON string that never closes, 64 KiB at a time (no length declared)."""
    yield 'data: {"choices": [], "x": "' if stream else '{"choices": [{"message": {"content": "'
    block = "x" * (64 << 10)
    for _ in range(model.huge_bytes // len(block)):
        yield block


async def _deep(model: FakeModel, stream: bool):
    depth = 100_000
    yield ("data: " if stream else "") + '{"choices": ' + "[" * depth + "]" * depth + "}" + ("\n\n" if stream else "")


_HOSTILE = {"drip": _drip, "huge": _huge, "deep": _deep}


def _parse_model(spec: str, token_delay_s: float = 0.0) -> tuple[str, FakeModel]:
    """``NAME=DELAY:ANSWER``, e.g. ``qwen=0.05:B``."""
    name, _, rest = spec.partition("=")
    delay, _, answer = rest.partition(":")
    return name, FakeModel(answer=answer or "ok", delay_s=float(delay or 0), token_delay_s=token_delay_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--model", action="append", default=[], help="NAME=DELAY_S:ANSWER (repeatable)")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds after each streamed token")
    parser.add_argument("--fail", action="append", default=[], help="NAME=HOW: a model that fails (hang, drip, "
                                                                      "huge, deep, garbage or an HTTP status)")
    parser.add_argument("--drip", type=float, default=1.0, help="seconds between the bytes of a dripping reply")
    args = parser.parse_args(argv)
    models = dict(_parse_model(spec, args.token_delay) for spec in args.model) or {"fake": FakeModel()}
    for spec in args.fail:
        name, _, how = spec.partition("=")
        models[name].fail, models[name].drip_s = how, args.drip
    with FakeOpenAI(models, port=args.port) as server:
        print(f"serving {', '.join(models)} at {server.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
