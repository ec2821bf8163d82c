"""Parsing and checking a request body: ``python benchmarks/request_validation.py``.

``moe2 serve`` checks every body against typed models of OpenAI's requests. This measures, on
three representative bodies (a one-line chat, a 20-turn conversation, a request with tools and
content parts), the models ``moe2_cli.serve.requests`` uses (msgspec: decode, then convert; and
``read_body``, which adds the depth walk and the value checks) against the same models written
for pydantic (strict, extra fields allowed: the same contract), and plain ``json.loads`` with no
checks, which the proxy used before. Best of 5 runs of 2,000 each, per body.
pydantic is not a moe2 dependency; it is installed with the ``openai`` test extra.
"""

from __future__ import annotations

import json
import sys
import timeit
from pathlib import Path
from typing import Any

import msgspec
import pydantic_core
from pydantic import BaseModel, ConfigDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moe2_cli.serve.intake import CHAT  # noqa: E402
from moe2_cli.serve.requests import ChatRequest, read_body  # noqa: E402

STRICT = ConfigDict(strict=True, extra="allow")


class Part(BaseModel):
    model_config = STRICT
    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    model_config = STRICT
    name: str
    arguments: str | None = None


class ToolCall(BaseModel):
    model_config = STRICT
    function: FunctionCall
    id: str | None = None
    type: str | None = None


class Message(BaseModel):
    model_config = STRICT
    role: str
    content: str | list[Part] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(BaseModel):
    model_config = STRICT
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(BaseModel):
    model_config = STRICT
    type: str
    function: FunctionDefinition


class StreamOptions(BaseModel):
    model_config = STRICT
    include_usage: bool | None = None


class PydanticChat(BaseModel):
    model_config = STRICT
    messages: list[Message]
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
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None


BODIES = {
    "one-line chat": {"model": "m", "messages": [{"role": "user", "content": "Pick A or B: is 7 or 9 larger?"}],
                      "metadata": {"category": "mcq"}},
    "20-turn conversation": {
        "model": "m", "temperature": 0.7, "max_tokens": 512, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "You are helpful. " * 20}] + [
            {"role": ("user", "assistant")[i % 2], "content": "some words of a long conversation " * 30}
            for i in range(20)]},
    "tools and parts": {
        "model": "m", "tool_choice": "auto",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "weather in Paris?"},
                                                  {"type": "image_url", "image_url": {"url": "data:," + "A" * 2000}}]},
                     {"role": "assistant", "content": None, "tool_calls": [
                         {"id": "c1", "type": "function",
                          "function": {"name": "w", "arguments": '{"city": "Paris"}'}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
        "tools": [{"type": "function", "function": {
            "name": f"f{i}", "description": "d" * 50,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
            for i in range(5)]},
}


def main() -> None:
    for name, body in BODIES.items():
        raw = json.dumps(body).encode()
        ways = {"json.loads, no checks": lambda raw=raw: json.loads(raw),
                "msgspec models": lambda raw=raw: msgspec.convert(msgspec.json.decode(raw), ChatRequest),
                "moe2 read_body": lambda raw=raw: read_body(raw, CHAT),
                "pydantic": lambda raw=raw: PydanticChat.model_validate(pydantic_core.from_json(raw,
                                                                                             allow_inf_nan=False))}
        for way, parse in ways.items():
            parse()
            best = min(timeit.repeat(parse, number=2000, repeat=5)) / 2000
            print(f"{name:22s} {len(raw):6d} B  {way:22s} {best * 1e6:7.1f} us", flush=True)


if __name__ == "__main__":
    main()
