"""Hostile upstreams for ``moe2 measure``: shared by ``tests/measure/test_fuzz_upstream.py`` and
``benchmarks/fuzz.py`` (target ``measure-upstream``).

One fake OpenAI-compatible server on 127.0.0.1 answers every completion with a reply that
hypothesis builds: a status code, headers (content types, a gzip body or a bogus gzip header),
a framing (an event stream, a whole JSON body, plain text), chunks that are well formed or
mutated (a value replaced by hostile raw JSON, a key deleted, a line that is not JSON, an error
object), a terminal ``[DONE]`` or ``finish_reason`` or neither, line ends, comments and other
SSE fields, an oversized chunk, and delays between events, up to a stall past the timeout. The
generator knows, by construction, whether its reply is a completion and which answer it carries.

Each example runs the real ``moe2 measure`` in-process on one expert and one prompt, and is
judged: exit 0, 1 or 2, no traceback, no end past :data:`HANG_S`; an ``ok`` record only for a
reply that was a completion, with its answer (``false_ok`` counts the others), and a completion
never logged as a failure (``false_failure``); every file written passes ``moe2 validate``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from starlette.responses import Response, StreamingResponse

from tests.fakes.openai_server import FakeModel, FakeOpenAI
from tests.fuzzing import EXIT_INTERNAL, json_paths, run_cli

HANG_S = 20.0
TIMEOUT_S = 2.0  # the endpoint's timeout: ample for a reply, on a busy machine too; a stall is longer
STALL_S = 2.5
MAX_REPLY_BYTES = 8 << 20  # measure's cap on one reply
PROMPT = {"id": "q0", "category": "mcq", "prompt": "Question 0: pick one. A) x B) y C) z", "reference": "B",
          "scorer": "mcq"}

# Raw JSON values: valid ones (with the value they decode to) and ones no strict parser accepts.
VALID_RAW = ["null", "true", "false", "0", "-1", "1.5", "1e300", '""', '"x"', '"\\u0000"', "[]", "{}", "[1]",
             "[{}]", '{"content": 5}', '{"content": "B"}', "[" * 10 + "1" + "]" * 10, '"stop"']
INVALID_RAW = ["NaN", "Infinity", "-Infinity", "1e400", "9" * 5000, "[" * 100 + "]" * 100, "{", "nope", "'x'"]
_INVALID = object()
_SENTINEL = "\u0001raw\u0001"
STATUSES = [201, 202, 301, 400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504]
CONTENT_TYPES = ["text/event-stream", "text/event-stream; charset=utf-8", "application/json", "text/plain",
                 "text/html", "application/octet-stream", ""]
TEXTS = ["<html><body>502 Bad Gateway</body></html>", "Internal Server Error", "", "null", "[]", "5",
         '{"ok": true}', '{"object": "list", "data": []}', "event: ping", ": keep-alive", "\x00\x01\x02", "é" * 100]


@dataclass(frozen=True)
class Event:
    """One line of an event stream: ``kind`` is chunk, bad, error, done or skip (a line with no text)."""

    line: str
    kind: str
    text: str = ""
    finish: bool = False
    delay_s: float = 0.0


@dataclass(frozen=True)
class Upstream:
    """One reply, and what it is: ``expected`` is its answer when it is a completion, else None."""

    status: int
    content_type: str
    encoding: str  # identity, gzip (a gzip body) or bogus (a gzip header on a plain body)
    pieces: tuple[tuple[bytes, float], ...]  # (bytes, delay before them)
    expected: str | None

    def describe(self) -> str:
        body = b"".join(p for p, _ in self.pieces)
        return f"HTTP {self.status} {self.content_type!r} {self.encoding} {body[:400]!r}"


# ---------------------------------------------------------------- what a reply is (the oracle)


def chunk_verdict(chunk: object) -> tuple[str, str, bool]:
    """(kind, text, finished) of one decoded chunk: kind is chunk, error or bad."""
    if chunk is _INVALID or not isinstance(chunk, dict):
        return "bad", "", False
    if chunk.get("error") is not None:
        return "error", "", False
    choices, usage = chunk.get("choices"), chunk.get("usage")
    if not (choices is None or isinstance(choices, list)) or not (usage is None or isinstance(usage, dict)):
        return "bad", "", False
    text, finished = "", False
    for choice in choices or []:
        if not isinstance(choice, dict):
            return "bad", "", False
        delta, finish = choice.get("delta"), choice.get("finish_reason")
        if not (delta is None or isinstance(delta, dict)) or not (finish is None or isinstance(finish, str)):
            return "bad", "", False
        content = (delta or {}).get("content")
        if not (content is None or isinstance(content, str)):
            return "bad", "", False
        text += content or ""
        finished = finished or bool(finish)
    return "chunk", text, finished


def stream_answer(events: list[Event], stall_at: int | None, oversize_at: int | None) -> str | None:
    """The answer an event stream carries, or None when it is not a completion."""
    texts, finished, data_lines = [], False, 0
    for i, event in enumerate(events):
        if stall_at == i or oversize_at == i:
            return None  # the reply stops in time, or grows past the cap, before it is complete
        data_lines += event.kind != "skip" or event.line.startswith("data:")
        if event.kind == "done":
            break
        if event.kind in ("bad", "error"):
            return None
        texts.append(event.text)
        finished = finished or event.finish
    else:
        if not finished or stall_at == len(events):
            return None
    answer = "".join(texts)
    return answer if data_lines else None  # an empty answer is a completion too (scored, counted as empty)


def whole_answer(reply: object) -> str | None:
    if reply is _INVALID or not isinstance(reply, dict) or reply.get("error") is not None:
        return None
    choices, usage = reply.get("choices"), reply.get("usage")
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(message, dict) or not isinstance(content, (str, type(None))):
        return None
    if not (usage is None or isinstance(usage, dict)):
        return None
    return content or ""


# ---------------------------------------------------------------- building replies


@st.composite
def mutated(draw, value: object) -> tuple[str, object]:
    """``value`` as JSON text after up to two edits (a value replaced by raw JSON, a key deleted),
    and what a strict parser reads from that text (``_INVALID`` when nothing)."""
    value = json.loads(json.dumps(value))
    raws: list[str] = []
    for _ in range(draw(st.sampled_from([0] * 12 + [1, 1, 2]))):  # most chunks are whole: completions get through
        path = draw(st.sampled_from(list(json_paths(value))))
        if not path:
            continue
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.integers(0, 3)) == 0 and isinstance(parent, dict):
            del parent[path[-1]]
            continue
        raw = draw(st.sampled_from(VALID_RAW + INVALID_RAW))
        parent[path[-1]] = f"{_SENTINEL}{len(raws)}"
        raws.append(raw)
    text = json.dumps(value)
    # A later edit may have removed an earlier one: only the raw values still in the text count.
    kept = [raw for i, raw in enumerate(raws) if json.dumps(f"{_SENTINEL}{i}") in text]
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"{_SENTINEL}{i}"), raw)
    if any(raw in INVALID_RAW for raw in kept):
        return text, _INVALID
    return text, json.loads(text)


contents = st.one_of(st.sampled_from(["B", "The answer is B", " ", "", "C"]), st.text(max_size=12))


@st.composite
def events(draw) -> Event:
    kind = draw(st.sampled_from(["chunk"] * 20 + ["usage", "usage", "skip", "skip", "empty", "raw", "error"]))
    delay = draw(st.sampled_from([0.0] * 8 + [0.001, 0.01]))
    prefix = draw(st.sampled_from(["data: ", "data:"]))
    if kind == "skip":
        return Event(draw(st.sampled_from([": ping", "event: message", "id: 7", "retry: 100", "x"])), "skip",
                     delay_s=delay)
    if kind == "empty":
        return Event(prefix.strip(), "skip", delay_s=delay)
    if kind == "raw":
        return Event(prefix + draw(st.sampled_from(INVALID_RAW + ["[]", "5", '"x"', "null"])), "bad", delay_s=delay)
    if kind == "error":
        chunk = {"error": {"message": draw(st.sampled_from(["oom", "", "overloaded"])), "type": "server_error"}}
    elif kind == "usage":
        chunk = {"id": "c", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}
    else:
        content = draw(contents)
        delta = draw(st.sampled_from([{"content": content}, {"role": "assistant", "content": content}, {}]))
        finish = draw(st.sampled_from([None, None, "stop"]))
        chunk = {"id": "c", "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    text, decoded = draw(mutated(chunk))
    verdict, answer, finished = chunk_verdict(decoded)
    return Event(prefix + text, verdict, answer, finished, delay)


def _rarely(draw, choices: int) -> int | None:
    """One of ``range(choices)`` once in a hundred examples, else None."""
    return draw(st.integers(0, choices - 1)) if choices and draw(st.integers(0, 99)) == 0 else None


@st.composite
def streams(draw, stalls: bool) -> tuple[list[tuple[str, float]], str | None]:
    """An event stream's lines (with delays, and a stall past the timeout when ``stalls``) and its answer."""
    body = draw(st.lists(events(), min_size=1, max_size=8))
    end = draw(st.sampled_from(["done", "done", "done", "finish", "none"]))
    if end in ("done", "finish"):
        body.append(Event('data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}', "chunk",
                          finish=True))
    if end == "done":
        body.append(Event("data: [DONE]", "done"))
        if draw(st.booleans()):
            body.append(Event("data: {nope", "bad"))  # after [DONE]: never read
    stall_at = _rarely(draw, len(body) + 1) if stalls else None
    oversize_at = _rarely(draw, len(body))
    answer = stream_answer(body, stall_at, oversize_at)
    lines = [(e.line, e.delay_s) for e in body]
    if oversize_at is not None:
        filler = json.dumps({"choices": [{"index": 0, "delta": {"content": "x" * (MAX_REPLY_BYTES + 10)}}]})
        lines.insert(oversize_at, ("data: " + filler, 0.0))
    if stall_at is not None:
        lines.insert(stall_at + (oversize_at is not None and oversize_at <= stall_at), ("", STALL_S))
    return lines, answer


@st.composite
def upstreams(draw) -> Upstream:
    framing = draw(st.sampled_from(["sse"] * 6 + ["whole", "whole", "text"]))
    encoding = draw(st.sampled_from(["identity"] * 18 + ["gzip", "bogus"]))
    if framing == "sse":
        lines, answer = draw(streams(stalls=encoding != "gzip"))  # a gzip body is sent whole
        separator = draw(st.sampled_from(["\n\n", "\n", "\r\n\r\n", "\r\r", "\r\n"]))
        pieces = [((line + separator if line else "").encode("utf-8", "surrogatepass"), delay)
                  for line, delay in lines]
    elif framing == "whole":
        completion = {"id": "c", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": draw(contents)}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1}}
        if draw(st.integers(0, 9)) == 0:
            completion = {"error": {"message": "overloaded", "type": "server_error"}}
        text, decoded = draw(mutated(completion))
        answer = whole_answer(decoded)
        pieces = [(text.encode("utf-8", "surrogatepass"), 0.0)]
    else:
        text = draw(st.one_of(st.sampled_from(TEXTS), st.text(max_size=60).filter(lambda t: "data:" not in t)))
        answer, pieces = None, [(text.encode("utf-8", "surrogatepass"), 0.0)]
    status = draw(st.sampled_from([200] * 45 + STATUSES))
    if encoding == "gzip":
        pieces = [(gzip.compress(b"".join(p for p, _ in pieces), mtime=0), 0.0)]
    if encoding == "bogus" and any(p for p, _ in pieces):
        answer = None  # bytes that do not inflate: a broken reply
    return Upstream(status=status, content_type=draw(st.sampled_from(CONTENT_TYPES)), encoding=encoding,
                    pieces=tuple(pieces), expected=answer if status == 200 else None)


def respond(upstream: Upstream) -> Callable[[dict], Response]:
    """The fake server's reply for every completion request."""
    headers = {"content-encoding": "gzip"} if upstream.encoding != "identity" else {}

    async def body() -> AsyncIterator[bytes]:
        for data, delay in upstream.pieces:
            if delay:
                await asyncio.sleep(delay)
            if data:
                yield data

    def reply(_request_body: dict) -> Response:
        return StreamingResponse(body(), status_code=upstream.status, headers=headers,
                                 media_type=upstream.content_type or None)

    return reply


# ---------------------------------------------------------------- running and judging


@dataclass
class UpstreamReport:
    examples: int = 0
    exit_codes: Counter = field(default_factory=Counter)
    internal: int = 0
    hangs: int = 0
    tracebacks: int = 0
    false_ok: int = 0  # an ok record for a reply that was not a completion, or with another answer
    false_failure: int = 0  # a completion logged as a failure
    invalid_files: int = 0  # a written file that moe2 validate refuses
    completions: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.internal or self.hangs or self.tracebacks or self.false_ok or self.false_failure
                    or self.invalid_files)

    def record(self, code: int, stderr: str, seconds: float, judged: dict[str, bool], sample: str) -> None:
        self.examples += 1
        self.exit_codes[code] += 1
        bad = {"internal": code not in (0, 1, 2) or code == EXIT_INTERNAL, "hangs": seconds > HANG_S,
               "tracebacks": "Traceback" in stderr or "internal error" in stderr, **judged}
        for name, hit in bad.items():
            setattr(self, name, getattr(self, name) + int(hit))
        if any(bad.values()) and len(self.failures) < 5:
            found = ", ".join(name for name, hit in bad.items() if hit)
            self.failures.append(f"{found}: exit {code}: {stderr[-600:]!r} <- {sample[:600]}")


def describe_upstream(name: str, report: UpstreamReport) -> str:
    codes = ", ".join(f"{code}: {count}" for code, count in sorted(report.exit_codes.items()))
    return (f"{name:15s} examples {report.examples:6d}  exit-70 {report.internal}  hangs {report.hangs}  "
            f"tracebacks {report.tracebacks}  false-ok {report.false_ok}  false-failure {report.false_failure}  "
            f"invalid-files {report.invalid_files}  completions {report.completions}  (exit codes {codes})")


def _write_inputs(where: Path, url: str) -> tuple[Path, Path]:
    scenario = where / "upstream.yaml"
    scenario.write_text(
        "schema_version: 1\nname: upstream\ntop_k: 1\ncategories: {mcq: {share: 1.0}}\n"
        "budgets: {energy_j: 1000, latency_s: 30}\nservers:\n"
        "  - name: a\n    profile: rtx-4090\n    llms: [qwen2.5-7b-instruct]\n"
        f"    endpoint: {{url: '{url}', models: {{qwen2.5-7b-instruct: m}}, timeout_s: {TIMEOUT_S}, "
        "power: none, watts: 100}\n")
    prompts = where / "prompts.jsonl"
    prompts.write_text(json.dumps(PROMPT) + "\n")
    return scenario, prompts


def judge(upstream: Upstream, code: int, out: Path) -> dict[str, bool]:
    """The counts this example adds to: a false ok, a false failure, a file validate refuses."""
    log = out / "requests.jsonl"
    # split on "\n" only: answers may hold U+0085 or U+2028, which str.splitlines also breaks at
    lines = [json.loads(line) for line in log.read_text().split("\n") if line] if log.exists() else []
    ok = [r for r in lines if r.get("kind") == "request" and r["ok"]]
    written = [p for p in (out / "scenario.yaml", *sorted((out / "profiles").glob("*.yaml"))) if p.exists()]
    invalid = bool(written) and run_cli("validate", *written)[0] != 0
    if upstream.expected is None:
        return {"false_ok": bool(ok) or code == 0, "false_failure": False, "invalid_files": invalid}
    right = len(ok) == 1 and ok[0]["answer"] == upstream.expected and code == 0
    return {"false_ok": bool(ok) and not right, "false_failure": not ok, "invalid_files": invalid or not written}


def fuzz_upstream(name: str, examples: int, seed: int = 0, report: UpstreamReport | None = None,
                  on_example: Callable[[UpstreamReport], None] | None = None) -> UpstreamReport:
    """Run ``moe2 measure`` against ``examples`` hostile replies; return what was found."""
    report = report or UpstreamReport()
    model = FakeModel()
    # The server's side of a reply the client stopped reading (after [DONE], past the cap) is no news.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    with FakeOpenAI({"m": model}) as server, tempfile.TemporaryDirectory() as tmp:
        scenario, prompts = _write_inputs(Path(tmp), server.url)

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.generate])
        @given(upstreams())
        def one(upstream: Upstream) -> None:
            model.reply_with = respond(upstream)
            with tempfile.TemporaryDirectory(dir=tmp) as out:
                started = time.monotonic()
                code, stderr, hang = run_cli("measure", scenario, "--out", out, "--prompts", prompts, "--warmup",
                                             "0", "--retries", "0", "--max-failure-rate", "0", "--format", "json")
                seconds = HANG_S + 1 if hang else time.monotonic() - started
                judged = judge(upstream, code, Path(out))
            report.completions += upstream.expected is not None
            report.record(code, stderr, seconds, judged, upstream.describe())
            if on_example is not None:
                on_example(report)

        one._hypothesis_internal_use_seed = seed  # reproducible runs: same seed, same replies
        one()
    return report
