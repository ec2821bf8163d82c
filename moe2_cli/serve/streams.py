"""A streamed completion from one expert: opened, its first event awaited within the
time-to-first-token limit, then read event by event until the total deadline, no more than the
byte cap in all, each event strict JSON no deeper than the nesting limit.

Until the first event has arrived nothing has gone to the client, so every failure up to then
is an :class:`UpstreamFailure` (or a :class:`ClientError`) that the proxy may still hand to the
next expert; after it, a failure can only end the stream.

A whole reply is asked for as a stream too when the expert's endpoint says ``stream_upstream``
(:func:`whole_answer`), and rebuilt from its chunks: closing that stream at the deadline stops a
server that notices its client gone only between chunks.
"""

from __future__ import annotations

import asyncio
import codecs
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import httpx

from moe2_cli.serve.rebuild import NotACompletion, Rebuilder
from moe2_cli.serve.requests import MalformedJSON, parse_json
from moe2_cli.serve.upstream import (
    Answer,
    Bounds,
    Target,
    UpstreamFailure,
    capped,
    complete,
    read_capped,
    refusal,
    reply_problem,
    send,
)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the three line ends server-sent events allow


@dataclass
class Opened:
    """A stream whose first event has arrived; ``events`` yields the data of the rest."""

    target: Target
    response: httpx.Response
    events: AsyncIterator[str]
    first: str
    bounds: Bounds

    async def rest(self) -> AsyncGenerator[str, None]:
        """The data of each later event; an :class:`UpstreamFailure` if the deadline passes or
        the connection breaks."""
        while True:
            try:
                data = await asyncio.wait_for(anext(self.events), max(self.bounds.left(), 0.0))
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                raise self.bounds.late(self.target.expert) from None
            if data.strip() != "[DONE]" and not _is_json(data):
                raise UpstreamFailure(self.target.expert, "malformed stream (an event is not JSON)", "malformed")
            yield data

    async def aclose(self) -> None:
        """Give the connection back (or drop it, mid-stream); safe to call twice."""
        await self.response.aclose()


async def open_stream(client: httpx.AsyncClient, target: Target, body: dict, bounds: Bounds, *, endpoint: str,
                      request_id: str | None) -> Opened:
    """Ask ``target`` for a stream and wait for its first event (within the time-to-first-byte
    limit, which here bounds the first event)."""
    first_s, is_ttfb = bounds.first_within()
    late = (UpstreamFailure(target.expert, f"no first token within {first_s:g} s", "ttft_timeout") if is_ttfb
            else bounds.late(target.expert))
    first_by = time.monotonic() + first_s
    response = await send(client, target, body, bounds, endpoint=endpoint, stream=True, request_id=request_id)
    try:
        return await _first_event(target, response, bounds, first_by, late)
    except BaseException:
        await response.aclose()
        raise


async def _first_event(target: Target, response: httpx.Response, bounds: Bounds, first_by: float,
                       late: UpstreamFailure) -> Opened:
    if response.status_code != 200:
        try:
            content = await asyncio.wait_for(read_capped(response, bounds.max_bytes, target.expert),
                                             max(bounds.left(), 0.0))
        except asyncio.TimeoutError:
            raise bounds.late(target.expert) from None
        raise refusal(target, response.status_code, content)
    events = data_of(lines_of(capped(response, bounds.max_bytes, target.expert)))
    try:
        first = await asyncio.wait_for(anext(events), first_by - time.monotonic())
    except asyncio.TimeoutError:
        raise late from None
    except StopAsyncIteration:
        raise UpstreamFailure(target.expert, "malformed stream (no event)", "malformed") from None
    if not _is_chunk(first):
        raise UpstreamFailure(target.expert, "malformed stream (the first event is not a chunk)", "malformed")
    return Opened(target=target, response=response, events=events, first=first, bounds=bounds)


async def whole_answer(client: httpx.AsyncClient, target: Target, body: dict, bounds: Bounds, *, endpoint: str,
                       n: int, request_id: str | None) -> Answer:
    """One whole completion from ``target``: asked for whole, or as a stream rebuilt into the
    whole reply when the target streams (see :func:`upstream.complete` for what is raised)."""
    if not target.stream:
        return await complete(client, target, body, bounds, endpoint=endpoint, n=n, request_id=request_id)
    started = time.perf_counter()
    try:
        reply = await asyncio.wait_for(_gathered(client, target, body, bounds, endpoint, request_id),
                                       max(bounds.left(), 0.0))
    except asyncio.TimeoutError:
        raise bounds.late(target.expert) from None
    problem = reply_problem(reply, chat=endpoint == "chat/completions", n=n)
    if problem:
        raise UpstreamFailure(target.expert, f"malformed reply ({problem})", "malformed")
    return Answer(reply=reply, latency_s=time.perf_counter() - started)


async def _gathered(client: httpx.AsyncClient, target: Target, body: dict, bounds: Bounds, endpoint: str,
                    request_id: str | None) -> dict:
    """The stream read to its end and rebuilt; closed however it ends (cancelled at the deadline
    too, which is what stops the expert)."""
    opened = await open_stream(client, target, body, bounds, endpoint=endpoint, request_id=request_id)
    rebuilder = Rebuilder(chat=endpoint == "chat/completions")
    rest = opened.rest()
    try:
        rebuilder.add(parse_json(opened.first.encode()))
        async for data in rest:
            if data.strip() == "[DONE]":
                break
            rebuilder.add(parse_json(data.encode()))
        return rebuilder.whole()
    except NotACompletion as err:
        raise UpstreamFailure(target.expert, f"malformed stream ({err.reason})" if err.kind == "malformed"
                              else err.reason, err.kind) from None
    finally:
        await rest.aclose()
        await opened.aclose()


def _is_json(data: str) -> bool:
    try:
        parse_json(data.encode())
    except MalformedJSON:
        return False
    return True


def _is_chunk(data: str) -> bool:
    try:
        chunk = parse_json(data.encode())
    except MalformedJSON:
        return False
    return isinstance(chunk, dict) and "error" not in chunk and isinstance(chunk.get("choices"), list)


async def data_of(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each server-sent event (its ``data:`` lines joined), comments and other
    fields skipped."""
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield "\n".join(data)
            data = []
    if data:
        yield "\n".join(data)


async def lines_of(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The lines of a byte stream (UTF-8), whichever line end it uses."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending: list[str] = []
    async for chunk in chunks:
        text = decoder.decode(chunk)
        if not _LINE_BREAK.search(text):
            pending.append(text)
            continue
        # A "\r" that ends a chunk may be the first half of a "\r\n": it waits for the next.
        carry = "\r" if text.endswith("\r") else ""
        lines = _LINE_BREAK.split("".join(pending) + text[:len(text) - len(carry)])
        pending = [lines.pop(), carry]
        for line in lines:
            yield line
    rest = "".join(pending) + decoder.decode(b"", final=True)
    for line in _LINE_BREAK.split(rest) if rest else ():
        yield line
