"""The client's side of a stream: an expert's chunks relayed under the served model's name, a
whole reply told as chunks (when answers are combined before anything is sent), and the error
event that ends a stream which broke after its first byte."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

DONE = "data: [DONE]\n\n"


def event(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def error_event(message: str, kind: str, code: str | None = None) -> str:
    """What ends a broken stream; the openai SDK raises it as an ``APIError``."""
    return event({"error": {"message": message, "type": kind, "param": None, "code": code}})


@dataclass
class Relabel:
    """Rewrites an expert's chunks: the proxy's completion id and model name, the ``moe2`` field
    on the first chunk, and usage only when the client asked for it (the proxy always asks the
    expert for it, to count the tokens spent)."""

    id: str
    model: str
    wants_usage: bool
    moe2: dict | None
    usage: dict = field(default_factory=dict)
    texts: dict[int, list[str]] | None = None  # each choice's pieces, kept only when asked for

    def answer(self) -> list[str | None] | None:
        """Each choice's text so far, by index, when ``texts`` are kept."""
        if self.texts is None:
            return None
        return ["".join(self.texts[i]) for i in sorted(self.texts)]

    def __call__(self, data: str) -> str | None:
        """The event to send for one upstream event's data, or None to send nothing."""
        if data.strip() == "[DONE]":
            return DONE
        try:
            chunk = json.loads(data)
        except ValueError:
            return None  # a keep-alive or a stray line: nothing a client can use
        if not isinstance(chunk, dict):
            return None
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if self.texts is not None:
            _keep(self.texts, chunk)
        if not self.wants_usage:
            chunk.pop("usage", None)
            if chunk.get("choices") == []:
                return None  # the usage-only chunk the client did not ask for
        chunk["id"], chunk["model"] = self.id, self.model
        if self.moe2 is not None:
            chunk["moe2"], self.moe2 = self.moe2, None
        return event(chunk)


def _keep(texts: dict[int, list[str]], chunk: dict) -> None:
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        index = choice.get("index", 0)
        if isinstance(piece, str) and isinstance(index, int):
            texts.setdefault(index, []).append(piece)


def told_as_chunks(reply: dict, wants_usage: bool, chat: bool) -> list[str]:
    """A whole completion as the events a stream of it would carry: each choice in one delta
    (content, tool calls, refusal and logprobs as they are), then its finish reason."""
    head = {"id": reply["id"], "object": "chat.completion.chunk" if chat else "text_completion",
            "created": reply.get("created"), "model": reply["model"],
            "system_fingerprint": reply.get("system_fingerprint")}
    out = []
    for i, choice in enumerate(reply["choices"]):
        index = choice.get("index", i)
        piece: dict = {"index": index, "logprobs": choice.get("logprobs"), "finish_reason": None}
        if chat:
            message = choice["message"]
            delta = {"role": "assistant", **{k: v for k, v in message.items() if k != "role"}}
            if delta.get("tool_calls"):
                delta["tool_calls"] = [{"index": j, **call} for j, call in enumerate(delta["tool_calls"])]
            piece["delta"] = delta
        else:
            piece["text"] = choice["text"]
        extra = {"moe2": reply["moe2"]} if i == 0 and "moe2" in reply else {}
        out.append(event({**head, "choices": [piece], **extra}))
    for i, choice in enumerate(reply["choices"]):
        end: dict = {"index": choice.get("index", i), "finish_reason": choice.get("finish_reason"), "logprobs": None}
        if chat:
            end["delta"] = {}
        else:
            end["text"] = ""
        out.append(event({**head, "choices": [end]}))
    if wants_usage:
        out.append(event({**head, "choices": [], "usage": reply.get("usage")}))
    return [*out, DONE]
