"""A client's body, parsed with limits and checked against the shape of OpenAI's requests, so
that nothing a client sends reaches the proxy in a form it cannot handle.

JSON is parsed strictly (RFC 8259: no ``NaN`` or ``Infinity``, no lone surrogates, numbers in
range) and no deeper than :data:`MAX_DEPTH`; the same parser reads the experts' replies. The
shape is then checked by typed models (msgspec: several times faster than pydantic on the same
models, see ``benchmarks/request_validation.py``). Fields the models do not name pass through
unchecked, as OpenAI adds fields faster than a proxy can follow; the ones they name must have
OpenAI's types. A body that fails is a :class:`InvalidField`: a 400 naming the field (``param``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import UNSET, Struct, UnsetType

from moe2_cli.serve.intake import CHAT, BadRequest

MAX_DEPTH = 64  # nesting of objects and arrays: OpenAI's own bodies need under ten
# The openai SDKs send their read timeout with every request: how long the client will wait.
CLIENT_TIMEOUT_HEADER = "x-stainless-read-timeout"
_WHERE = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


class InvalidField(BadRequest):
    """A 400 that names the field at fault, as OpenAI's errors do."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class MalformedJSON(ValueError):
    """Bytes that are not one JSON value within the limits."""


def parse_json(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in ``raw``; a :class:`MalformedJSON` for anything RFC 8259 refuses, and for
    values nested deeper than ``max_depth``."""
    try:
        value = msgspec.json.decode(raw)
    except RecursionError:
        raise MalformedJSON(f"nested deeper than {max_depth} levels") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise MalformedJSON(str(err)) from None
    # Nesting needs an opening bracket per level: most bodies have too few to count the levels.
    few = raw.count(b"[") + raw.count(b"{") <= max_depth
    if not few and depth_exceeds(value, max_depth):
        raise MalformedJSON(f"nested deeper than {max_depth} levels")
    return value


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest deeper than ``limit`` (iterative: a hostile depth cannot
    exhaust the stack here, or later when the value is written out again)."""
    if not isinstance(value, (dict, list)):
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


# ---------------------------------------------------------------------- the shapes checked


class Part(Struct):
    """One part of a message's content; a text part's ``text`` is a string."""

    type: str
    text: str | UnsetType = UNSET


class FunctionCall(Struct):
    name: str
    arguments: str | UnsetType = UNSET


class ToolCall(Struct):
    function: FunctionCall
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET


class Message(Struct):
    role: str
    content: str | list[Part] | None = None
    name: str | UnsetType = UNSET
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | UnsetType = UNSET


class FunctionDefinition(Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(Struct):
    type: str
    function: FunctionDefinition


class StreamOptions(Struct):
    include_usage: bool | None = None


class _Common(Struct):
    """What chat and text completions share."""

    model: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    user: str | None = None
    logit_bias: dict[str, float] | None = None
    metadata: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None
    timeout: float | None = None


class ChatRequest(_Common):
    messages: list[Message] = []
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Common):
    prompt: str | list[str] | None = None
    logprobs: int | None = None
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None


# ---------------------------------------------------------------------- reading a body


def read_body(raw: bytes, endpoint: str) -> dict:
    """The request body as a checked JSON object (the client's own dict, every field kept)."""
    try:
        body = parse_json(raw)
    except MalformedJSON as err:
        raise InvalidField(f"the body is not valid JSON ({err})") from None
    if not isinstance(body, dict):
        raise InvalidField(f"the body must be a JSON object (got {_json_type(body)})")
    if endpoint == CHAT and "messages" not in body:
        raise InvalidField("Missing required parameter: 'messages'", "messages")
    try:
        shaped: _Common = msgspec.convert(body, ChatRequest if endpoint == CHAT else CompletionRequest)
    except msgspec.ValidationError as err:
        raise _invalid(str(err)) from None
    _check_values(shaped)
    return body


def _check_values(shaped: _Common) -> None:
    """What types alone do not say."""
    if shaped.timeout is not None and not shaped.timeout > 0:
        raise InvalidField(f"Invalid 'timeout': must be a number of seconds > 0 (got {shaped.timeout})", "timeout")
    if isinstance(shaped, ChatRequest):
        for i, message in enumerate(shaped.messages):
            for j, part in enumerate(message.content if isinstance(message.content, list) else ()):
                if part.type == "text" and part.text is UNSET:
                    raise InvalidField(f"Missing required parameter: 'messages[{i}].content[{j}].text'",
                                       f"messages[{i}].content[{j}].text")


def _invalid(error: str) -> InvalidField:
    """msgspec's "Expected `str`, got `int` - at `$.messages[0].content`" as OpenAI words it."""
    match = _WHERE.match(error)
    what, path = (match.group("what"), match.group("path") or "") if match else (error, "")
    missing = _MISSING.search(what)
    if missing:
        field = f"{path}.{missing.group('field')}".lstrip(".")
        return InvalidField(f"Missing required parameter: '{field}'", field)
    first = what[:1].lower() + what[1:]
    if not path.lstrip("."):
        return InvalidField(f"Invalid body: {first}")
    return InvalidField(f"Invalid type for '{path.lstrip('.')}': {first}", path.lstrip("."))


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def client_timeout(body: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
    """How long the client will wait, in seconds: the body's ``timeout``, or the read timeout the
    openai SDKs send as a header (a malformed header is ignored: it is the SDK's, not the user's)."""
    given = [body["timeout"]] if isinstance(body.get("timeout"), (int, float)) else []
    try:
        header = float(headers.get(CLIENT_TIMEOUT_HEADER, "nan"))
    except ValueError:
        header = math.nan
    if math.isfinite(header) and header > 0:
        given.append(header)
    return min(given) if given else None
