"""A whole completion rebuilt from the chunks of its stream, as the expert would have sent it whole:
the same id, model and created time, each choice's content (or text), refusal, tool calls,
logprobs and finish reason, and ``usage`` when the stream carried it (a server that streams no
token counts gives a reply without ``usage``).

A stream in which some choice has no finish reason was cut before its end: it is no completion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


class NotACompletion(ValueError):
    """The chunks do not make a completion; ``kind`` is "malformed" or "cut"."""

    def __init__(self, reason: str, kind: str = "malformed"):
        super().__init__(reason)
        self.reason, self.kind = reason, kind


@dataclass
class _Choice:
    """One choice's pieces as they arrive."""

    texts: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    calls: dict[int, dict] = field(default_factory=dict)  # tool calls by their index in the stream
    logprobs: dict | None = None
    finish_reason: str | None = None

    def add(self, piece: dict, chat: bool) -> None:
        delta = piece.get("delta") if chat else {"content": piece.get("text")}
        if not isinstance(delta, dict):
            raise NotACompletion("a chunk's choice without a delta")
        if isinstance(delta.get("content"), str):
            self.texts.append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            self.refusals.append(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            self._add_call(call)
        self._add_logprobs(piece.get("logprobs"))
        if piece.get("finish_reason") is not None:
            self.finish_reason = piece["finish_reason"]

    def _add_call(self, call: object) -> None:
        """A tool call's first piece carries its id, type and name; every piece a part of its
        arguments."""
        if not isinstance(call, dict) or not isinstance(call.get("index", 0), int):
            raise NotACompletion("a tool call piece without an index")
        whole = self.calls.setdefault(call.get("index", 0), {"id": None, "type": "function",
                                                            "function": {"name": "", "arguments": ""}})
        for key in ("id", "type"):
            if call.get(key):
                whole[key] = call[key]
        function = call.get("function")
        if isinstance(function, dict):
            for key in ("name", "arguments"):
                if isinstance(function.get(key), str):
                    whole["function"][key] += function[key]

    def _add_logprobs(self, logprobs: object) -> None:
        """Each chunk's logprobs cover its own tokens: their lists are joined in order."""
        if not isinstance(logprobs, dict):
            return
        if self.logprobs is None:
            self.logprobs = {}
        for key, value in logprobs.items():
            if isinstance(value, list):
                self.logprobs.setdefault(key, []).extend(value)
            else:
                self.logprobs.setdefault(key, value)

    def whole(self, index: int, chat: bool) -> dict:
        out: dict = {"index": index, "logprobs": self.logprobs, "finish_reason": self.finish_reason}
        text = "".join(self.texts)
        if not chat:
            return {**out, "text": text}
        calls = [self.calls[i] for i in sorted(self.calls)]
        # A reply that only calls tools has no content, as the whole reply would say.
        message: dict = {"role": "assistant", "content": text or (None if calls else "")}
        if self.refusals:
            message["refusal"] = "".join(self.refusals)
        if calls:
            message["tool_calls"] = calls
        return {**out, "message": message}


class Rebuilder:
    """Fed each event's parsed chunk (:meth:`add`), then asked for the whole reply (:meth:`whole`)."""

    def __init__(self, chat: bool):
        self.chat = chat
        self.head: dict = {}
        self.usage: dict | None = None
        self.choices: dict[int, _Choice] = {}

    def add(self, chunk: object) -> None:
        if not isinstance(chunk, dict):
            raise NotACompletion("an event that is not a chunk")
        if "error" in chunk:
            raise NotACompletion("an error event in the stream")
        if not isinstance(chunk.get("choices"), list):
            raise NotACompletion("a chunk without choices")
        for key in ("id", "model", "created", "system_fingerprint"):
            if chunk.get(key) is not None:
                self.head.setdefault(key, chunk[key])
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for piece in chunk["choices"]:
            index = piece.get("index", 0) if isinstance(piece, dict) else None
            if not isinstance(index, int):
                raise NotACompletion("a chunk's choice without an index")
            self.choices.setdefault(index, _Choice()).add(piece, self.chat)

    def whole(self) -> dict:
        """The whole completion; :class:`NotACompletion` ("cut") when some choice never finished."""
        if not self.choices or any(c.finish_reason is None for c in self.choices.values()):
            raise NotACompletion("the stream ended before its finish reason", "cut")
        reply = {"id": self.head.get("id"), "object": "chat.completion" if self.chat else "text_completion",
                 "created": self.head.get("created", int(time.time())), "model": self.head.get("model"),
                 "system_fingerprint": self.head.get("system_fingerprint"),
                 "choices": [self.choices[i].whole(i, self.chat) for i in sorted(self.choices)]}
        return reply if self.usage is None else {**reply, "usage": self.usage}
