"""A client that leaves before its reply begins ends the request's work at once.

A stream's client is watched by the response itself, chunk by chunk. A client that waits for a
whole reply (or for a stream's first chunk) sends nothing more once its body is read, so only
the ASGI ``http.disconnect`` message tells that it has gone. Without watching for it, the
experts would keep generating until the request's deadline, and a single-slot expert server
would hold every request after it in its queue behind an answer nobody reads. Cancelling the
work closes every expert call it made (counted as ``abandoned``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")


async def unless_client_leaves(receive: Receive, work: Awaitable[T]) -> T | None:
    """``work``'s result (never None), or None once the client has disconnected first (``work``
    is then cancelled and has ended). Call it only after the body has been read: the only
    message left to receive is the disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            # Its expert calls count themselves abandoned as they unwind: wait for them.
            await asyncio.gather(task, return_exceptions=True)
    return None if task.cancelled() else task.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
