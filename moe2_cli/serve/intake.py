"""What a client's request asks for: which model, which endpoint, how many choices, whether to
stream, the conversation it belongs to, and the query the router routes (its text, category and
tags).

:func:`query_of` is the one place a request becomes a query: what of a conversation is routed
(``route_on``) and what a request naming no category gets (the category policy) plug in there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from moe2_cli.serve import DEFAULT_ROUTE_ON
from moe2_cli.serve.categories import DEFAULT, GIVEN, INFERRED, CategoryPolicy, find
from moe2_cli.serve.conversation import routed_text
from moe2_cli.serve.queries import Query

if TYPE_CHECKING:
    from moe2_cli.serve.sessions import Stuck

CHAT, COMPLETIONS = "chat/completions", "completions"
MAX_N = 128  # OpenAI's own limit on choices per request
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # what an echoed request id may hold
CATEGORY_HEADER, SESSION_HEADER = "X-Moe2-Category", "X-Moe2-Session"


class BadRequest(Exception):
    """The client's request cannot be answered as sent."""

    status: int = 400
    code: str | None = None
    param: str | None = None

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        if param is not None:
            self.param = param


class UnknownModel(BadRequest):
    status, code, param = 404, "model_not_found", "model"


@dataclass(frozen=True)
class Intake:
    """How requests become queries: the scenario's categories, what a request naming none gets,
    and what of a conversation is routed (one of :data:`~moe2_cli.serve.ROUTE_ON`)."""

    categories: tuple[str, ...]
    policy: CategoryPolicy = field(default_factory=CategoryPolicy)
    route_on: str = DEFAULT_ROUTE_ON


@dataclass(frozen=True)
class Asked:
    """One parsed request; ``session`` names the conversation it continues (None: none named),
    and ``sticky`` says, once it is routed, that it went to that conversation's expert."""

    endpoint: str
    body: dict
    query: Query
    n: int
    stream: bool
    wants_usage: bool
    session: str | None = None
    sticky: Stuck | None = None


def request_id(given: str | None, fresh: str) -> str:
    """The client's ``X-Request-Id`` when it is a sensible token, else ``fresh``."""
    return given if given is not None and _REQUEST_ID.fullmatch(given) else fresh


def read_request(endpoint: str, body: dict, *, models: Sequence[str], intake: Intake, headers: Mapping[str, str],
                 rid: str) -> Asked:
    """The request, checked; a :class:`BadRequest` (or :class:`UnknownModel`) says why not.
    ``headers`` are looked up by lower-case name (Starlette's ``Headers`` match any case)."""
    model = body.get("model")
    if model is not None and model not in models:
        raise UnknownModel(f"The model {model!r} does not exist (this server serves {', '.join(models)})")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false (got {stream!r})")
    options = body.get("stream_options")
    wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return Asked(endpoint=endpoint, body=body, query=query_of(endpoint, body, intake, headers, rid),
                 n=choices_asked(body), stream=stream, wants_usage=wants_usage, session=session_of(body, headers))


def choices_asked(body: dict) -> int:
    n = body.get("n", 1)
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        raise BadRequest(f"'n' must be an integer from 1 to {MAX_N} (got {n!r})")
    return n


def session_of(body: dict, headers: Mapping[str, str]) -> str | None:
    """The conversation a request continues: the ``X-Moe2-Session`` header, else the body's
    ``user`` (OpenAI's end-user id, which a chat front end sets per user)."""
    named = headers.get(SESSION_HEADER.lower()) or body.get("user")
    return named if isinstance(named, str) and named else None


def query_of(endpoint: str, body: dict, intake: Intake, headers: Mapping[str, str], rid: str) -> Query:
    """What the router routes: the request's text (``intake.route_on`` of a conversation), its
    category (None while it waits to be inferred) and its tags (``metadata.tags``)."""
    try:
        text = routed_text(body.get("messages"), intake.route_on) if endpoint == CHAT else completion_prompt(body)
    except ValueError as err:
        raise BadRequest(str(err)) from None
    category, source = category_of(body, headers.get(CATEGORY_HEADER.lower()), intake)
    return Query(id=rid, category=category, text=text, tags=tags_of(body), category_source=source)


def category_of(body: dict, header: str | None, intake: Intake) -> tuple[str | None, str]:
    """The category named by ``metadata.category`` (top level, or inside a literal
    ``extra_body``), else by the header, matched without regard to case, and where it came
    from; a request naming none gets what ``intake.policy`` says (None: to be inferred)."""
    named = _metadata(body, "category") or header
    if named is None:
        return _unnamed(intake.policy)
    found = find(named, intake.categories)
    if found is None:
        raise BadRequest(f"unknown category {named!r} (categories: {', '.join(intake.categories)})")
    return found, GIVEN


def _unnamed(policy: CategoryPolicy) -> tuple[str | None, str]:
    if policy.kind == "require":
        raise BadRequest("this server requires a category: send metadata.category in the body (with the openai "
                         "SDK: metadata= or extra_body), or the X-Moe2-Category header", param="metadata.category")
    return (policy.default, DEFAULT) if policy.kind == "default" else (None, INFERRED)


def tags_of(body: dict) -> tuple[str, ...]:
    """``metadata.tags``: the request's labels, which ``label-lookup`` routes by."""
    tags = _metadata(body, "tags")
    if tags is None:
        return ()
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadRequest(f"'metadata.tags' must be a list of strings (got {tags!r})", param="metadata.tags")
    return tuple(tags)


def _metadata(body: dict, key: str) -> object:
    # The openai SDK sends extra_body's keys at the top level; a hand-written client copying the
    # SDK's call may send the extra_body object itself.
    for holder in (body, body.get("extra_body")):
        metadata = holder.get("metadata") if isinstance(holder, dict) else None
        if isinstance(metadata, dict) and metadata.get(key) is not None:
            return metadata[key]
    return None


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
