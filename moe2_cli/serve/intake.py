"""What a client's request asks for: which model, which endpoint, how many choices, whether to
stream, and the query the gate routes (its text and category).

:func:`query_of` is the one place a request becomes a query, so another way of choosing the
text or the category plugs in there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from moe2_cli.serve.queries import Query

CHAT, COMPLETIONS = "chat/completions", "completions"
MAX_N = 128  # OpenAI's own limit on choices per request
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # what an echoed request id may hold


class BadRequest(Exception):
    """The client's request cannot be answered as sent."""

    status: int = 400
    code: str | None = None
    param: str | None = None


class UnknownModel(BadRequest):
    status, code, param = 404, "model_not_found", "model"


@dataclass(frozen=True)
class Asked:
    """One parsed request."""

    endpoint: str
    body: dict
    query: Query
    n: int
    stream: bool
    wants_usage: bool


def request_id(given: str | None, fresh: str) -> str:
    """The client's ``X-Request-Id`` when it is a sensible token, else ``fresh``."""
    return given if given is not None and _REQUEST_ID.fullmatch(given) else fresh


def read_request(endpoint: str, body: dict, *, models: Sequence[str], categories: Sequence[str],
                 category_header: str | None, rid: str) -> Asked:
    """The request, checked; a :class:`BadRequest` (or :class:`UnknownModel`) says why not."""
    model = body.get("model")
    if model is not None and model not in models:
        raise UnknownModel(f"The model {model!r} does not exist (this server serves {', '.join(models)})")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false (got {stream!r})")
    options = body.get("stream_options")
    wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return Asked(endpoint=endpoint, body=body, query=query_of(endpoint, body, categories, category_header, rid),
                 n=choices_asked(body), stream=stream, wants_usage=wants_usage)


def choices_asked(body: dict) -> int:
    n = body.get("n", 1)
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        raise BadRequest(f"'n' must be an integer from 1 to {MAX_N} (got {n!r})")
    return n


def query_of(endpoint: str, body: dict, categories: Sequence[str], header: str | None, rid: str) -> Query:
    """What the gate routes: the request's text and its category."""
    text = prompt_text(body) if endpoint == CHAT else completion_prompt(body)
    return Query(id=rid, category=category_of(body, header, categories), text=text)


def category_of(body: dict, header: str | None, categories: Sequence[str]) -> str:
    """``metadata.category`` (top level, or inside a literal ``extra_body``), else the header,
    else the first category; matched without regard to case."""
    chosen = _metadata(body).get("category") or header or categories[0]
    by_fold = {c.casefold(): c for c in categories}
    if not isinstance(chosen, str) or chosen.casefold() not in by_fold:
        raise BadRequest(f"unknown category {chosen!r} (categories: {', '.join(categories)})")
    return by_fold[chosen.casefold()]


def _metadata(body: dict) -> dict:
    # The openai SDK sends extra_body's keys at the top level; a hand-written client copying the
    # SDK's call may send the extra_body object itself.
    for holder in (body, body.get("extra_body")):
        metadata = holder.get("metadata") if isinstance(holder, dict) else None
        if isinstance(metadata, dict) and metadata.get("category") is not None:
            return metadata
    return {}


def prompt_text(body: dict) -> str:
    """The last user message's text; in a conversation without one, the system (or developer)
    messages' text."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("'messages' must be a non-empty list of message objects")
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content(message)
    system = [_content(m) for m in messages if m.get("role") in ("system", "developer")]
    if not system:
        raise BadRequest("'messages' has no user, system or developer message")
    return "\n".join(system)


def _content(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise BadRequest(f"a {message.get('role')} message's 'content' must be a string or a list of parts")


def completion_prompt(body: dict) -> str:
    """A text completion's prompt: a string, or a list holding one (a batch of prompts would
    route each to other experts, which one reply cannot carry)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest(f"'prompt' must be a string or a list of one string (got {type(prompt).__name__}"
                         f"{f' of {len(prompt)}' if isinstance(prompt, list) else ''})")
    return prompt
