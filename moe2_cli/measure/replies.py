"""What an endpoint's 200 reply says: a completion, or why it is not one.

A request counts as answered only when its reply is a parsable completion: an event stream
(one JSON chunk per ``data:`` line, as every OpenAI-compatible server sends) with at least one
well-formed chunk and a terminal ``[DONE]`` or ``finish_reason``, or, from a server that ignores
``stream``, one JSON chat completion. Anything else raises a :class:`ReplyFailure` whose
``reason`` names the kind, so that a gateway's HTML page, an error object sent with a 200, a
broken chunk or a stream cut before its end is counted as a failure, never as an answer. A
completion without text is a completion: it is scored (an empty answer is wrong, not missing),
and the summary counts it apart.

The reader is fed bytes as they arrive and reads at most ``max_bytes`` of a reply, up to the end of
its answer; JSON is parsed with the depth and number limits of the proxy's own parser.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from moe2_cli.serve.requests import MalformedJSON, parse_json

NOT_SSE = "not_sse"  # a 200 that is neither an event stream nor a JSON chat completion
ERROR_BODY = "error_body"  # an error object sent as the reply, or as a chunk of the stream
MALFORMED_CHUNK = "malformed_chunk"  # a data: line that is not a chunk of a chat completion
CUT = "cut"  # a stream that ended without [DONE] or a finish_reason, or whose connection dropped
TOO_LARGE = "too_large"  # more bytes than any answer to a prompt needs
MAX_REPLY_BYTES = 8 << 20  # a long answer with usage is well under 1 MiB
_PREVIEW = 60  # characters of a bad reply quoted in its failure


class ReplyFailure(Exception):
    """A 200 reply that is not a completion; ``reason`` is one of the kinds above."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Parsed:
    """A completion: its text, when its first text arrived (None when it came whole) and usage."""

    answer: str
    first_text_at: float | None
    usage: dict = field(default_factory=dict)


class ReplyReader:
    """Reads one reply fed in pieces (:meth:`feed`), then says what it was (:meth:`result`).
    ``done`` turns true at ``[DONE]``: nothing after it is read."""

    def __init__(self, max_bytes: int = MAX_REPLY_BYTES, clock: Callable[[], float] = time.time):
        self.max_bytes = max_bytes
        self.clock = clock
        self.done = False
        self._size = 0
        self._tail = b""  # an unfinished line
        self._whole: bytearray | None = bytearray()  # the body, until a data: line shows it is a stream
        self._parts: list[str] = []
        self._first_text_at: float | None = None
        self._usage: dict = {}
        self._finished = False

    def feed(self, data: bytes) -> None:
        # The cap holds for what is read up to the end of the answer: bytes after [DONE] in the
        # same piece (one piece of a gzip body can be all of it) are never read, as they would not
        # be if they came later.
        self._size += len(data)
        if self._whole is not None:
            self._whole += data
        if b"\n" not in data and b"\r" not in data:
            self._tail += data
            self._check_size()
            return
        lines = (self._tail + data).splitlines(keepends=True)
        # A line is whole once its end has come; a lone "\r" may be the first half of "\r\n".
        self._tail = lines.pop() if not lines[-1].endswith(b"\n") else b""
        for line in lines:
            if len(line) > self.max_bytes:
                self._too_large()
            self._line(line.rstrip(b"\r\n"))
            if self.done:
                return
        self._check_size()

    def _check_size(self) -> None:
        if self._size > self.max_bytes:
            self._too_large()

    def _too_large(self) -> NoReturn:
        raise ReplyFailure(TOO_LARGE, f"the reply passed {self.max_bytes} bytes")

    def result(self) -> Parsed:
        """The completion, or a :class:`ReplyFailure` saying why the reply is not one."""
        if self._tail and not self.done:
            self._line(self._tail.rstrip(b"\r\n"))
        if self._whole is not None:
            return _whole_reply(bytes(self._whole))
        if not self.done and not self._finished:
            raise ReplyFailure(CUT, "the stream ended without [DONE] or a finish_reason")
        return Parsed(answer="".join(self._parts), first_text_at=self._first_text_at, usage=self._usage)

    def _line(self, line: bytes) -> None:
        # Other SSE fields (event:, id:, retry:) and comments (": ping") carry no text.
        if self.done or not line.startswith(b"data:"):
            return
        self._whole = None
        data = line[len(b"data:"):].strip()
        if not data:
            return
        if data == b"[DONE]":
            self.done = True
            return
        try:
            chunk = parse_json(data)
        except MalformedJSON as err:
            raise ReplyFailure(MALFORMED_CHUNK, f"a stream chunk is not JSON ({err}): {_preview(data)}") from None
        self._chunk(chunk)

    def _chunk(self, chunk: object) -> None:
        if isinstance(chunk, dict) and chunk.get("error") is not None:
            raise ReplyFailure(ERROR_BODY, f"the stream sent an error: {_error_message(chunk['error'])}")
        problem = chunk_problem(chunk)
        if problem:
            raise ReplyFailure(MALFORMED_CHUNK, f"a stream chunk {problem}")
        assert isinstance(chunk, dict)
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                self._parts.append(text)
                if self._first_text_at is None:
                    self._first_text_at = self.clock()
            self._finished = self._finished or bool(choice.get("finish_reason"))
        self._usage = chunk.get("usage") or self._usage


def chunk_problem(chunk: object) -> str | None:
    """What is wrong with one chunk of a streamed chat completion, or None."""
    if not isinstance(chunk, dict):
        return "is not a JSON object"
    choices, usage = chunk.get("choices"), chunk.get("usage")
    if choices is not None and not isinstance(choices, list):
        return "has choices that are not a list"
    if usage is not None and not isinstance(usage, dict):
        return "has usage that is not an object"
    for choice in choices or ():
        if not isinstance(choice, dict):
            return "has a choice that is not an object"
        delta = choice.get("delta")
        if delta is not None and not isinstance(delta, dict):
            return "has a delta that is not an object"
        if not isinstance((delta or {}).get("content"), (str, type(None))):
            return "has content that is not text"
        if not isinstance(choice.get("finish_reason"), (str, type(None))):
            return "has a finish_reason that is not text"
    return None


def _whole_reply(body: bytes) -> Parsed:
    """A reply without a single data: line: a whole JSON chat completion, or a failure."""
    if not body.strip():
        raise ReplyFailure(NOT_SSE, "the reply was empty")
    try:
        reply = parse_json(body)
    except MalformedJSON:
        raise ReplyFailure(NOT_SSE, f"the reply is neither an event stream nor JSON: {_preview(body)}") from None
    if isinstance(reply, dict) and reply.get("error") is not None:
        raise ReplyFailure(ERROR_BODY, f"the reply is an error: {_error_message(reply['error'])}")
    choices = reply.get("choices") if isinstance(reply, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    usage = reply.get("usage") if isinstance(reply, dict) else None
    if not isinstance(message, dict) or not isinstance(content, (str, type(None))) \
            or not isinstance(usage, (dict, type(None))):
        raise ReplyFailure(NOT_SSE, f"the reply is JSON but not a chat completion: {_preview(body)}")
    return Parsed(answer=content or "", first_text_at=None, usage=usage or {})


def _error_message(error: object) -> str:
    message = error.get("message") if isinstance(error, dict) else error
    return _preview(str(message))


def _preview(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return repr(text[:_PREVIEW] + ("..." if len(text) > _PREVIEW else ""))
