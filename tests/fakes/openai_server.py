"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and local demos.

It speaks ``GET /v1/models`` and ``POST /v1/chat/completions`` (streaming and not), serves any
number of model ids, and answers each with a configured delay and answer. A model can be made to
fail with HTTP 500 or to hang; a closed port (``unused_url``) stands in for a server that refuses
connections. It is test code on a real socket, not a mock of the client.

    with FakeOpenAI({"m1": FakeModel(answer="B", delay_s=0.02)}) as server:
        httpx.post(server.url + "/v1/chat/completions", json={...})

Run it by hand to try ``moe2 serve`` or ``moe2 measure`` without GPUs::

    python -m tests.fakes.openai_server --port 8081 --model qwen=0.05:B --model llama=0.08:C
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
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

Answer = Callable[[str], str]


@dataclass
class FakeModel:
    """How one served model behaves. ``answer`` is the reply, or a function of the last user
    message; ``delay_s`` passes before the first token; ``fail`` is None, "500" or "hang"."""

    answer: str | Answer = "ok"
    delay_s: float = 0.0
    fail: str | None = None

    def reply(self, prompt: str) -> str:
        return self.answer(prompt) if callable(self.answer) else self.answer


@dataclass(frozen=True)
class Call:
    model: str
    prompt: str
    stream: bool
    started: float


def unused_url() -> str:
    """A loopback URL on which nothing listens: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # the parts form of the chat API
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return str(body.get("prompt") or "")


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class FakeOpenAI:
    """The server; use as a context manager. ``calls`` records every completion request."""

    def __init__(self, models: dict[str, FakeModel], *, api_key: str | None = None, port: int = 0):
        self.models = models
        self.api_key = api_key
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ the HTTP app

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/models", self._list_models, methods=["GET"]),
                                 Route("/v1/chat/completions", self._complete, methods=["POST"])])

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

    async def _complete(self, request: Request):
        refused = self._refused(request)
        if refused:
            return refused
        body = json.loads(await request.body())
        name = body.get("model")
        model = self.models.get(name)
        if model is None:
            return JSONResponse({"error": {"message": f"model {name!r} not found", "type": "not_found"}},
                                status_code=404)
        prompt = _last_user_text(body)
        with self._lock:
            self.calls.append(Call(model=name, prompt=prompt, stream=bool(body.get("stream")),
                                   started=time.monotonic()))
        if model.fail == "hang":
            await asyncio.sleep(3600)
        if model.fail == "500":
            return JSONResponse({"error": {"message": "upstream exploded", "type": "server_error"}}, status_code=500)
        await asyncio.sleep(model.delay_s)
        text = model.reply(prompt)
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(text),
                 "total_tokens": _tokens(prompt) + _tokens(text)}
        if body.get("stream"):
            return StreamingResponse(self._chunks(name, text, usage, body), media_type="text/event-stream")
        return JSONResponse({"id": "cmpl-fake", "object": "chat.completion", "created": int(time.time()),
                             "model": name, "usage": usage,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}]})

    async def _chunks(self, name: str, text: str, usage: dict, body: dict):
        def event(delta: dict, finish: str | None = None, **extra) -> str:
            chunk = {"id": "cmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": name, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(chunk)}\n\n"

        yield event({"role": "assistant", "content": ""})
        words = text.split(" ")
        for i, word in enumerate(words):
            yield event({"content": word if i == 0 else " " + word})
            await asyncio.sleep(0)
        yield event({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            final = {"id": "cmpl-fake", "object": "chat.completion.chunk", "model": name, "choices": [],
                     "usage": usage}
            yield f"data: {json.dumps(final)}\n\n"
        yield "data: [DONE]\n\n"

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


def _parse_model(spec: str) -> tuple[str, FakeModel]:
    """``NAME=DELAY:ANSWER``, e.g. ``qwen=0.05:B``."""
    name, _, rest = spec.partition("=")
    delay, _, answer = rest.partition(":")
    return name, FakeModel(answer=answer or "ok", delay_s=float(delay or 0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--model", action="append", default=[], help="NAME=DELAY_S:ANSWER (repeatable)")
    args = parser.parse_args(argv)
    models = dict(_parse_model(spec) for spec in args.model) or {"fake": FakeModel()}
    with FakeOpenAI(models, port=args.port) as server:
        print(f"serving {', '.join(models)} at {server.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
