"""The text a conversation is routed on (and its category inferred from): the last user
message, every user turn joined, or every message of every role (``route_on``).

Shared by ``serve`` (a request's ``messages``) and ``route`` (a query file's ``messages``), so
both read a conversation the same way. Errors are ValueErrors whose message the caller places.
"""

from __future__ import annotations

from moe2_cli.serve import ROUTE_ON


def routed_text(messages: object, route_on: str = "last") -> str:
    """The text of ``messages`` (OpenAI chat messages) to route on. Without a user message, the
    system (or developer) messages' text stands in for ``last`` and ``user``."""
    if route_on not in ROUTE_ON:
        raise ValueError(f"route_on must be one of {', '.join(ROUTE_ON)} (got {route_on!r})")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ValueError("'messages' must be a non-empty list of message objects")
    if route_on == "all":
        # An assistant turn that only called tools has no content: it adds no text.
        return "\n".join(_content(m) for m in messages if m.get("content") is not None)
    users = [m for m in messages if m.get("role") == "user"]
    if users:
        return "\n".join(_content(m) for m in (users[-1:] if route_on == "last" else users))
    system = [_content(m) for m in messages if m.get("role") in ("system", "developer")]
    if not system:
        raise ValueError("'messages' has no user, system or developer message")
    return "\n".join(system)


def _content(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise ValueError(f"a {message.get('role')} message's 'content' must be a string or a list of parts")
