"""Work that runs beside the proxy for the server's life (shadow traffic, plan reloads): a small
base class whose hooks do nothing until a companion overrides them.

The proxy calls :meth:`Companion.answered` once a request has been answered with a 200; the
server starts companions in its lifespan, tells them when the drain begins and stops them before
the upstream connections close; ``/metrics`` shows their :meth:`Companion.families`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moe2_cli.serve.intake import Asked
    from moe2_cli.serve.metrics import Family
    from moe2_cli.serve.routing import Pick


class Companion:
    def families(self) -> list[Family]:
        """The metric families ``/metrics`` shows for this companion."""
        return []

    def answered(self, asked: Asked, called: Sequence[Pick]) -> None:
        """``asked`` was answered (status 200) by calling ``called``; called on the event loop,
        after the reply is handed over, so it must not wait."""

    async def start(self) -> None:
        """On the event loop, once the server starts."""

    def drain(self) -> None:
        """The server began to drain (SIGTERM or SIGINT)."""

    async def stop(self) -> None:
        """The server stops: end what runs (the upstream connections close after this)."""
