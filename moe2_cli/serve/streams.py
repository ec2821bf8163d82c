"""A streamed completion from one expert: opened, its first event awaited within the
time-to-first-token limit, then read event by event until the total deadline.

Until the first event has arrived nothing has gone to the client, so every failure up to then
is an :class:`UpstreamFailure` (or a :class:`ClientError`) that the proxy may still hand to the
next expert; after it, a failure can only end the stream.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import httpx

from moe2_cli.serve.upstream import Target, UpstreamFailure, headers_for, refusal, upstream_body


@dataclass
class Opened:
    """A stream whose first event has arrived; ``events`` yields the data of the rest."""

    target: Target
    response: httpx.Response
    events: AsyncIterator[str]
    first: str
    deadline: float  # time.monotonic() by which the whole stream must be read

    async def rest(self) -> AsyncGenerator[str, None]:
        """The data of each later event; an :class:`UpstreamFailure` if the deadline passes or
        the connection breaks."""
        while True:
            try:
                data = await asyncio.wait_for(anext(self.events), self.deadline - time.monotonic())
            except StopAsyncIteration:
                return
            except (asyncio.TimeoutError, httpx.TimeoutException):
                raise UpstreamFailure(self.target.expert, f"stream not finished within "
                                      f"{self.target.timeout_s:g} s", "timeout") from None
            except httpx.HTTPError as err:
                raise UpstreamFailure(self.target.expert, f"stream broken ({type(err).__name__})",
                                      "unreachable") from None
            yield data

    async def aclose(self) -> None:
        """Give the connection back (or drop it, mid-stream); safe to call twice."""
        await self.response.aclose()


async def open_stream(client: httpx.AsyncClient, target: Target, body: dict, *, endpoint: str,
                      ttft_s: float | None, request_id: str | None) -> Opened:
    """Ask ``target`` for a stream and wait for its first event."""
    started = time.monotonic()
    first_s = min(ttft_s or math.inf, target.timeout_s)
    kind = "ttft_timeout" if first_s < target.timeout_s else "timeout"
    late = UpstreamFailure(target.expert, f"no first token within {first_s:g} s", kind)
    request = client.build_request("POST", f"{target.api_base}/{endpoint}", json=upstream_body(body, target, True),
                                   headers=headers_for(target, request_id), timeout=target.timeout_s)
    try:
        response = await asyncio.wait_for(client.send(request, stream=True), first_s)
    except (asyncio.TimeoutError, httpx.TimeoutException):
        raise late from None
    except httpx.HTTPError as err:
        raise UpstreamFailure(target.expert, f"unreachable ({type(err).__name__})", "unreachable") from None
    try:
        return await _first_event(target, response, started + first_s, started + target.timeout_s, late)
    except BaseException:
        await response.aclose()
        raise


async def _first_event(target: Target, response: httpx.Response, first_by: float, deadline: float,
                       late: UpstreamFailure) -> Opened:
    if response.status_code != 200:
        raise refusal(target, response.status_code, await response.aread())
    events = data_of(response.aiter_lines())
    try:
        first = await asyncio.wait_for(anext(events), first_by - time.monotonic())
    except (asyncio.TimeoutError, httpx.TimeoutException):
        raise late from None
    except StopAsyncIteration:
        raise UpstreamFailure(target.expert, "malformed stream (no event)", "malformed") from None
    except httpx.HTTPError as err:
        raise UpstreamFailure(target.expert, f"stream broken ({type(err).__name__})", "unreachable") from None
    if not _is_chunk(first):
        raise UpstreamFailure(target.expert, "malformed stream (the first event is not a chunk)", "malformed")
    return Opened(target=target, response=response, events=events, first=first, deadline=deadline)


def _is_chunk(data: str) -> bool:
    try:
        chunk = json.loads(data)
    except ValueError:
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
