"""What the fake OpenAI server answers: whole replies and streamed chunks for chat and text
completions, honouring ``tools``, ``n``, ``logprobs`` and ``max_tokens`` the way OpenAI does.

A reply is planned once (:class:`Planned`: per choice, its tokens or its tool call, and why it
stopped) and then rendered whole or as chunks, so both forms always say the same thing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

FINGERPRINT = "fp_fake"


@dataclass(frozen=True)
class Planned:
    """One completion: ``tokens`` of each choice (text answers) or ``tool`` (a tool call), the
    finish reason, and the token counts of the usage block."""

    chat: bool
    model: str
    n: int
    tokens: list[str]
    finish: str
    tool: dict | None
    logprobs: bool
    prompt_tokens: int

    @property
    def usage(self) -> dict:
        completion = self.n * (len(self.tokens) if self.tool is None else 1)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}


def count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def plan(body: dict, model: str, prompt: str, answer: str, uses_tools: bool) -> Planned:
    """The completion for ``body``: a tool call when tools are offered (and the model uses
    them), else ``answer`` word by word, cut at ``max_tokens`` with finish reason "length"."""
    chat = "messages" in body
    tools = body.get("tools") if chat and uses_tools else None
    tool = None
    if tools:
        name = tools[0].get("function", {}).get("name", "tool")
        tool = {"id": "call_fake0", "type": "function",
                "function": {"name": name, "arguments": json.dumps({"query": prompt})}}
    words = answer.split(" ")
    tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish = "tool_calls" if tool else "stop"
    if tool is None and isinstance(limit, int) and limit < len(tokens):
        tokens, finish = tokens[:limit], "length"
    return Planned(chat=chat, model=model, n=int(body.get("n") or 1), tokens=tokens, finish=finish, tool=tool,
                   logprobs=bool(body.get("logprobs")), prompt_tokens=count_tokens(prompt))


def _logprobs(tokens: list[str], chat: bool) -> dict:
    if not chat:
        return {"tokens": tokens, "token_logprobs": [-0.25] * len(tokens), "top_logprobs": None,
                "text_offset": [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]}
    return {"content": [{"token": t, "logprob": -0.25, "bytes": list(t.encode()), "top_logprobs": []}
                        for t in tokens], "refusal": None}


def _head(p: Planned, chunk: bool) -> dict:
    kind = ("chat.completion" if p.chat else "text_completion") + (".chunk" if chunk and p.chat else "")
    return {"id": "cmpl-fake", "object": kind, "created": int(time.time()), "model": p.model,
            "system_fingerprint": FINGERPRINT}


def whole(p: Planned) -> dict:
    """The non-streaming reply."""
    choices = []
    for i in range(p.n):
        choice: dict = {"index": i, "finish_reason": p.finish,
                        "logprobs": _logprobs(p.tokens, p.chat) if p.logprobs and p.tool is None else None}
        if not p.chat:
            choice["text"] = "".join(p.tokens)
        elif p.tool is not None:
            choice["message"] = {"role": "assistant", "content": None, "tool_calls": [p.tool], "refusal": None}
        else:
            choice["message"] = {"role": "assistant", "content": "".join(p.tokens), "refusal": None}
        choices.append(choice)
    return {**_head(p, False), "choices": choices, "usage": p.usage}


def chunk(p: Planned, index: int, delta: dict | None = None, finish: str | None = None,
          logprobs: dict | None = None) -> str:
    """One server-sent event carrying one choice's piece."""
    choice: dict = {"index": index, "finish_reason": finish, "logprobs": logprobs}
    if p.chat:
        choice["delta"] = delta or {}
    else:
        choice["text"] = (delta or {}).get("content", "")
    return event({**_head(p, True), "choices": [choice]})


def event(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def opening(p: Planned) -> list[str]:
    """The chunks sent before the first token: the role of each chat choice."""
    return [chunk(p, i, {"role": "assistant", "content": ""}) for i in range(p.n)] if p.chat else []


def pieces(p: Planned) -> list[list[str]]:
    """The chunks of each step, one step per token (every choice advances together)."""
    if p.tool is not None:
        call = {"index": 0, "id": p.tool["id"], "type": "function",
                "function": {"name": p.tool["function"]["name"], "arguments": p.tool["function"]["arguments"]}}
        return [[chunk(p, i, {"tool_calls": [call]}) for i in range(p.n)]]
    return [[chunk(p, i, {"content": t}, logprobs=_logprobs([t], p.chat) if p.logprobs else None)
             for i in range(p.n)] for t in p.tokens]


def closing(p: Planned, include_usage: bool) -> list[str]:
    out = [chunk(p, i, finish=p.finish) for i in range(p.n)]
    if include_usage:
        out.append(event({**_head(p, True), "choices": [], "usage": p.usage}))
    return [*out, "data: [DONE]\n\n"]
