"""A request's token limit clamped to its category's cap (:mod:`moe2_cli.scenario.caps`).

A client's ``max_tokens`` (and a chat request's ``max_completion_tokens``) is lowered to the cap
when it asks for more, and ``max_tokens`` is set to the cap when it names no limit: every
OpenAI-compatible server reads ``max_tokens``, not all read the newer field. Nothing else of the
request or of the reply changes: ``usage`` and ``finish_reason`` ("length" for a cut answer)
are the expert's own.
"""

from __future__ import annotations

from moe2_cli.serve.intake import CHAT

_LIMITS = {CHAT: ("max_tokens", "max_completion_tokens")}
_TEXT_LIMITS = ("max_tokens",)


def capped_body(body: dict, endpoint: str, cap: int) -> dict:
    """``body`` with every token limit it gives at most ``cap``, or ``max_tokens: cap`` if none."""
    fields = [f for f in _LIMITS.get(endpoint, _TEXT_LIMITS) if body.get(f) is not None]
    if not fields:
        return {**body, "max_tokens": cap}
    return {**body, **{f: min(body[f], cap) for f in fields}}  # read_body has checked they are integers
