"""moe2: expert selection for collaborative inference across edge LLMs.

``moe2_cli.select(...)`` and ``moe2_cli.frontier(...)`` are the Python API (see ``moe2_cli.api``).
They are imported on first use, so that ``import moe2_cli`` and the command line start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("select", "frontier", "compare", "choose", "solve", "trace_frontier", "session_for")

if TYPE_CHECKING:
    from moe2_cli.api import choose, compare, frontier, select, session_for, solve, trace_frontier


def __getattr__(name: str) -> Any:
    if name in _API:
        from moe2_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'moe2_cli' has no attribute {name!r}")


__all__ = ["__version__", "choose", "compare", "frontier", "select", "session_for", "solve", "trace_frontier"]
