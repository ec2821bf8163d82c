"""A slow single-slot OpenAI-compatible server on 127.0.0.1 that stops generating when its
client goes, as llama.cpp's server does.

It generates one completion at a time (a request waits for the slot, like a server started with
one slot), one token every ``token_s`` seconds, ``max_tokens`` of them (``max_completion_tokens``
first). Between tokens it checks whether its client is still connected, whether the reply is
streamed or whole; when the client has gone it frees the slot and counts a cut, which a test
waits for with :meth:`SlotServer.wait_for_cuts`. With ``whole_notices=False`` it checks only
on a stream, as llama-cpp-python's server does: a whole reply is computed to its end, client or
not. ``events`` records, in order, each generation's start and end (finished or cut, with the
tokens it made), so a test can tell whether one request waited behind another.

    with SlotServer(["m1"], token_s=0.05) as server:
        ...  # server.url, server.calls, server.wait_for_cuts(1), server.events
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.fakes import openai_replies as replies
from tests.fakes.openai_server import Call, FakeModel, FakeOpenAI, _prompt

UNCAPPED_TOKENS = 10_000  # a request that names no limit generates for minutes


@dataclass(frozen=True)
class Event:
    """A generation took the slot ("began") or let it go ("finished" or "cut") after ``tokens``."""

    what: str
    request_id: str | None
    tokens: int = 0


class SlotServer(FakeOpenAI):
    """``cuts`` counts generations abandoned because the client went; ``finished`` those done."""

    def __init__(self, models: list[str], token_s: float, whole_notices: bool = True):
        super().__init__({m: FakeModel() for m in models})
        self.token_s = token_s
        self.whole_notices = whole_notices
        self.cuts = 0
        self.finished = 0
        self.events: list[Event] = []
        self._slot: asyncio.Lock | None = None  # made on the server's own event loop

    async def _complete(self, request: Request) -> Response:
        body = json.loads(await request.body())
        name = body.get("model")
        if name not in self.models:
            return JSONResponse({"error": {"message": f"model {name!r} not found"}}, status_code=404)
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or UNCAPPED_TOKENS
        planned = replies.plan(body, name, _prompt(body), " ".join(["tok"] * limit), uses_tools=False)
        self._record(Call(model=name, prompt=_prompt(body), stream=bool(body.get("stream")), started=time.monotonic(),
                          body=body, request_id=request.headers.get("x-request-id")))
        rid = request.headers.get("x-request-id")
        if body.get("stream"):
            return StreamingResponse(self._streamed(request, planned, rid), media_type="text/event-stream")
        async with self._holding(rid) as slot:
            async for _ in self._tokens(request if self.whole_notices else None, planned, slot):
                pass
        # A client that went reads nothing: the status only ends the handler.
        return JSONResponse(replies.whole(planned)) if slot.get("done") else Response(status_code=499)

    async def _streamed(self, request: Request, planned: replies.Planned, rid: str | None) -> AsyncIterator[str]:
        async with self._holding(rid) as slot:
            for line in replies.opening(planned):
                yield line
            async for line in self._tokens(request, planned, slot):
                yield line
            if slot.get("done"):
                for line in replies.closing(planned, include_usage=True):
                    yield line

    async def _tokens(self, request: Request | None, planned: replies.Planned, slot: dict) -> AsyncIterator[str]:
        """Each token's chunk, one per ``token_s``, while the client is still there (not checked
        without a ``request``); made as it goes: thousands of chunks made at once would hold the loop."""
        for token in planned.tokens:
            await asyncio.sleep(self.token_s)
            if request is not None and await request.is_disconnected():
                return
            slot["tokens"] = slot.get("tokens", 0) + 1
            yield replies.chunk(planned, 0, {"content": token})
        slot["done"] = True

    def _holding(self, request_id: str | None) -> _Holding:
        if self._slot is None:
            self._slot = asyncio.Lock()
        return _Holding(self, request_id)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            self._lock.notify_all()

    def _began(self, request_id: str | None) -> None:
        with self._lock:
            self.events.append(Event("began", request_id))

    def _ended(self, request_id: str | None, state: dict) -> None:
        done = bool(state.get("done"))
        with self._lock:
            if done:
                self.finished += 1
            else:
                self.cuts += 1
            self.events.append(Event("finished" if done else "cut", request_id, state.get("tokens", 0)))
            self._lock.notify_all()

    def wait_for_cuts(self, count: int, timeout_s: float = 30) -> bool:
        """Block until ``count`` generations were abandoned by their clients; False if not in time."""
        with self._lock:
            return self._lock.wait_for(lambda: self.cuts >= count, timeout=timeout_s)

    def wait_for_ends(self, count: int, timeout_s: float = 30) -> bool:
        """Block until ``count`` generations let the slot go, finished or cut; False if not in time."""
        with self._lock:
            return self._lock.wait_for(lambda: self.cuts + self.finished >= count, timeout=timeout_s)


class _Holding:
    """The slot, held for one generation; whether it finished is counted when it is let go
    (also when the generation is cancelled because the client went)."""

    def __init__(self, server: SlotServer, request_id: str | None):
        self.server = server
        self.request_id = request_id
        self.state: dict = {}

    async def __aenter__(self) -> dict:
        assert self.server._slot is not None
        await self.server._slot.acquire()
        self.server._began(self.request_id)
        return self.state

    async def __aexit__(self, *exc) -> None:
        assert self.server._slot is not None
        self.server._ended(self.request_id, self.state)  # recorded before the next generation can begin
        self.server._slot.release()
