"""Hostile requests against a live ``moe2 serve``: shared by ``tests/serve/test_hostile.py`` and
``benchmarks/fuzz.py`` (target ``serve``).

Chat and text completion bodies that work are mutated: a value replaced by hostile raw JSON
(NaN, infinities, lone surrogates, numbers past any range, 100,000-deep nesting, wrong types),
a key deleted or added, the bytes cut or damaged; headers are drawn from hostile values too
(content types, request ids, categories, the SDK's timeout header, keys). Each request goes to
the proxy on 127.0.0.1, in front of fake experts on 127.0.0.1, and the answer is judged: a 200
(a completion, or a stream that ends with ``[DONE]``), a 4xx or a 503 with an OpenAI error body,
or a 504 when the request asked for a short timeout. Anything else is counted: 500s and other
5xx, resets (the connection dropped), hangs (no answer in :data:`HANG_S`) and malformed answers
(an error without OpenAI's shape, a broken stream).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from moe2_cli.serve.plan import Plan, make_plan
from tests.fuzzing import json_paths
from tests.serve.conftest import (
    EXPERTS,
    SERVERS,
    fake_experts,
    plan_for,
    running_proxy,
    write_scenario,
    write_selection,
)

HANG_S = 20.0
SHORT_TIMEOUT_S = 5.0  # a client timeout under this may fairly end in a 504

_CHAT = [
    {"model": "serve-test", "messages": [{"role": "user", "content": "poetry sonnet"}]},
    {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [
        {"type": "text", "text": "history empire"}, {"type": "image_url", "image_url": {"url": "data:x"}}]}],
     "metadata": {"category": "math"}, "n": 2, "temperature": 0.5, "max_tokens": 3, "stop": ["\n"]},
    {"messages": [{"role": "user", "content": "algebra"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "4"}],
     "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
     "tool_choice": "auto", "logprobs": True, "top_logprobs": 2},
    {"messages": [{"role": "user", "content": "chemistry molecule"}], "stream": True,
     "stream_options": {"include_usage": True}, "extra_body": {"metadata": {"category": "mcq"}}},
]
_COMPLETIONS = [{"model": "serve-test", "prompt": "poetry sonnet", "max_tokens": 4},
                {"prompt": ["history"], "stream": True, "echo": False, "logprobs": 1}]
SEEDS = [("/v1/chat/completions", body) for body in _CHAT] + [("/v1/completions", body) for body in _COMPLETIONS]

HOSTILE = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 5000, "-" + "9" * 30, '"\\ud800"', '"a\\udc00"',
    '"\\u0000"', '""', '"x"', '"' + "é" * 2000 + '"', "null", "true", "false", "0", "-1", "1.5", "129", "[]", "{}",
    "[null]", "[1]", '["a", 2]', '[{"type": "text", "text": 5}]', '[{"type": "text", "text": null}]',
    '[{"type": "text"}]', '[{"text": "x"}]', '{"include_usage": 1}', '{"include_usage": true}', '{"category": 5}',
    '{"category": "MATH"}', "[" * 100_000 + "]" * 100_000, '{"a":' * 70 + "1" + "}" * 70,
    '{"a":' * 60 + "1" + "}" * 60, '[{"role": "user"}]', '[{"role": "user", "content": {"a": 1}}]', "[[]]",
]
_SENTINEL = "\u0001hostile\u0001"
_KEYS = ["messages", "prompt", "model", "stream", "stream_options", "n", "metadata", "extra_body", "timeout",
         "temperature", "tools", "tool_choice", "stop", "max_tokens", "logprobs", "content", "text", "role", "x"]
_HEADERS = {
    "content-type": ["application/json", "text/plain", "application/json; charset=latin-1", "", "\u00e9"],
    "x-request-id": ["abc", "", "x" * 500, "\u00e9\u00e9", "a b", ".."],
    "x-moe2-category": ["math", "MCQ", "poetry", "", "\u00e9", "math, mcq"],
    "x-stainless-read-timeout": ["600.0", "2.5", "0.001", "0", "-1", "nan", "inf", "1e400", "abc", ""],
    "authorization": ["Bearer x", "Basic eA==", "", "Bearer"],
    "accept-encoding": ["gzip", "identity", "br, zstd", "*;q=0"],
    "accept": ["text/event-stream", "*/*", "application/xml"],
}


@st.composite
def hostile_body(draw, body: dict) -> bytes:
    """``body`` with up to three hostile edits (none: only the headers are hostile), its bytes
    sometimes damaged."""
    body = json.loads(json.dumps(body))
    raw: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(json_paths(body))))
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        how = draw(st.integers(0, 5))
        if how == 0 and path and isinstance(parent, dict):
            del parent[path[-1]]
            continue
        target = _get(body, path)
        if how == 1 and isinstance(target, dict):  # a key added, known or not
            target[draw(st.sampled_from(_KEYS))] = _SENTINEL + str(len(raw))
        elif path:
            parent[path[-1]] = _SENTINEL + str(len(raw))
        else:
            continue
        raw.append((_SENTINEL + str(len(raw)), draw(st.sampled_from(HOSTILE))))
    text = json.dumps(body)
    for sentinel, value in raw:
        text = text.replace(json.dumps(sentinel), value)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # byte damage: a cut, or a byte replaced
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        data = data[:at] if draw(st.booleans()) else data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    return data


def _get(body, path):
    for key in path:
        body = body[key]
    return body


headers = st.dictionaries(st.sampled_from(sorted(_HEADERS)), st.just(""), max_size=3).flatmap(
    lambda chosen: st.fixed_dictionaries({k: st.sampled_from(_HEADERS[k]) for k in chosen}))
requests = st.tuples(st.sampled_from(SEEDS).flatmap(lambda seed: st.tuples(st.just(seed[0]), hostile_body(seed[1]))),
                     headers)


@dataclass
class HostileReport:
    examples: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: int = 0  # 500, and any 5xx but 503 (and 504 after a short client timeout)
    resets: int = 0
    hangs: int = 0
    malformed: int = 0  # an error body without OpenAI's shape, or a stream that did not end cleanly
    failures: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.server_errors or self.resets or self.hangs or self.malformed)

    def record(self, outcome: str, status: int | None, sample: str) -> None:
        self.examples += 1
        self.statuses[status if status is not None else outcome] += 1
        if outcome != "ok":
            setattr(self, outcome, getattr(self, outcome) + 1)
            if len(self.failures) < 5:
                self.failures.append(f"{outcome} (HTTP {status}) <- {sample[:300]!r}")


def describe_serve(name: str, report: HostileReport) -> str:
    codes = ", ".join(f"{code}: {count}" for code, count in sorted(report.statuses.items(), key=str))
    return (f"{name:15s} examples {report.examples:6d}  500s/5xx {report.server_errors}  resets {report.resets}  "
            f"hangs {report.hangs}  malformed {report.malformed}  (statuses {codes})")


def judge(reply: httpx.Response, sent_headers: dict[str, str]) -> str:
    """"ok", or which count the reply falls in."""
    status = reply.status_code
    if status == 200:
        return "ok" if _good_completion(reply) else "malformed"
    allowed = 400 <= status < 500 or status == 503 or (status == 504 and _short_timeout(sent_headers, reply))
    if not allowed:
        return "server_errors"
    try:
        error = reply.json()["error"]
    except (ValueError, KeyError, TypeError):
        return "malformed"
    ok = isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str)
    return "ok" if ok and "param" in error and "code" in error else "malformed"


def _short_timeout(sent_headers: dict[str, str], reply: httpx.Response) -> bool:
    body = reply.request.content
    try:
        given = [float(sent_headers.get("x-stainless-read-timeout", "inf"))]
        asked = json.loads(body).get("timeout") if body else None
    except (ValueError, AttributeError):
        asked = None
    if isinstance(asked, (int, float)):
        given.append(float(asked))
    return min(given) < SHORT_TIMEOUT_S


def _good_completion(reply: httpx.Response) -> bool:
    if not reply.headers.get("content-type", "").startswith("text/event-stream"):
        try:
            return isinstance(reply.json().get("choices"), list)
        except (ValueError, AttributeError):
            return False
    events = [line[len("data: "):] for line in reply.text.splitlines() if line.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        return False
    try:
        return all(isinstance(json.loads(e), dict) and "error" not in json.loads(e) for e in events[:-1])
    except ValueError:
        return False


def send(client: httpx.Client, path: str, data: bytes, sent_headers: dict[str, str]) -> tuple[str, int | None]:
    try:
        reply = client.post(path, content=data, headers={k: v.encode("latin-1") for k, v in sent_headers.items()})
    except httpx.TimeoutException:
        return "hangs", None
    except (httpx.TransportError, httpx.DecodingError):
        return "resets", None
    return judge(reply, sent_headers), reply.status_code


@contextmanager
def live_proxy(plan: Plan, directory: Path) -> Iterator[str]:
    """``moe2 serve`` on 127.0.0.1 in front of fake experts that answer at once; yields its URL."""
    fast = {name: {llm: {"delay_s": 0.0} for llm in llms} for name, (_, llms) in SERVERS.items()}
    with fake_experts(fast) as (_, urls), running_proxy(plan_for(plan, directory, urls)) as (url, _):
        yield url


def fuzz_serve(name: str, examples: int, seed: int = 0, report: HostileReport | None = None,
               on_example: Callable[[HostileReport], None] | None = None, *, plan: Plan | None = None,
               directory: Path | None = None) -> HostileReport:
    """Send ``examples`` hostile requests to a live proxy; return what was found."""
    report = report or HostileReport()
    with _planned(plan, directory) as (plan, directory), live_proxy(plan, directory) as url, \
            httpx.Client(base_url=url, timeout=HANG_S, trust_env=False) as client:

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.generate])
        @given(requests)
        def one(request) -> None:
            (path, data), sent_headers = request
            outcome, status = send(client, path, data, sent_headers)
            report.record(outcome, status, f"{path} {sent_headers} {data.decode('utf-8', 'replace')}")
            if on_example is not None:
                on_example(report)

        one._hypothesis_internal_use_seed = seed  # reproducible runs: same seed, same inputs
        one()
        after = client.post("/v1/chat/completions", json=_CHAT[0])
        if after.status_code != 200:  # the server must still answer an honest request
            report.record("server_errors", after.status_code, "an honest request after the run")
    return report


@contextmanager
def _planned(plan: Plan | None, directory: Path | None) -> Iterator[tuple[Plan, Path]]:
    """The given plan and directory, or a plan over the test scenario in a temporary one."""
    if plan is not None and directory is not None:
        yield plan, directory
        return
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        scenario = write_scenario(where, dict.fromkeys(SERVERS, "http://127.0.0.1:9"))
        yield make_plan(scenario, selection=write_selection(where, EXPERTS)), where
