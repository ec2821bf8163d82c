"""A judge: an expert of the scenario asked whether an answer is right, with one fixed prompt.

The prompt (docs/serve.md shows it verbatim) asks for one character, ``1`` or ``0``. The reply
is read strictly: after trimming white space it must be exactly ``1`` or ``0``; anything else
is unparsable, counted, and leaves the score missing, as does a judge call that fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from moe2_cli.errors import UsageError
from moe2_cli.measure.client import headers
from moe2_cli.progress import ProgressCallback, ProgressEvent, no_progress
from moe2_cli.scenario.endpoint import Endpoint

GRADING_SYSTEM = ("You grade answers to questions. Reply with one character and nothing else: 1 if the answer "
                  "is correct, 0 if it is not.")
GRADING_USER = "Question:\n{question}\n\nAnswer:\n{answer}\n\nIs the answer correct? Reply 1 or 0."
GRADING_MAX_TOKENS = 4  # a model may send white space around its digit


@dataclass(frozen=True)
class Judge:
    """Where the judge answers: the expert's endpoint and the model id it serves the LLM under."""

    expert: str
    endpoint: Endpoint
    model: str


@dataclass(frozen=True)
class Verdicts:
    """Scores in the order asked (None: missing), how many replies were unparsable and how many
    calls failed."""

    scores: tuple[float | None, ...]
    unparsable: int
    failed: int


def find_judge(scenario, expert: str) -> Judge:
    """The judge ``expert`` (``server/llm``) of ``scenario``, which must have an endpoint."""
    instance = scenario.instance
    if expert not in instance.expert_ids:
        raise UsageError(f"is not an expert of {scenario.name!r} (it has: {', '.join(instance.expert_ids)})", "judge")
    server, llm = expert.split("/", 1)
    endpoint = scenario.endpoints.get(server)
    if endpoint is None:
        raise UsageError(f"{expert}: server {server!r} has no endpoint block in the scenario", "judge")
    return Judge(expert=expert, endpoint=endpoint, model=endpoint.model_id(llm))


def grading_messages(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": GRADING_SYSTEM},
            {"role": "user", "content": GRADING_USER.format(question=question, answer=answer)}]


def parse_verdict(reply: str) -> float | None:
    """1.0 or 0.0 for a reply that is exactly ``1`` or ``0`` (white space aside), else None."""
    text = reply.strip()
    return float(text) if text in ("0", "1") else None


def judge_all(judge: Judge, items: Sequence[tuple[str, str]], *, concurrency: int = 4, attempts: int = 3,
              progress: ProgressCallback = no_progress) -> Verdicts:
    """The judge's score of each (question, answer); ``progress`` gets a ``judging`` event per reply."""
    return asyncio.run(_judge_all(judge, items, concurrency, attempts, progress))


async def _judge_all(judge: Judge, items: Sequence[tuple[str, str]], concurrency: int, attempts: int,
                     progress: ProgressCallback) -> Verdicts:
    slots = asyncio.Semaphore(concurrency)
    done = 0
    outcomes: list[str | None] = []

    async def one(client: httpx.AsyncClient, question: str, answer: str) -> str | None:
        nonlocal done
        async with slots:
            reply = await _ask(client, judge, grading_messages(question, answer), attempts)
        done += 1
        progress(ProgressEvent("judging", done, len(items)))
        return reply

    async with httpx.AsyncClient() as client:
        outcomes = await asyncio.gather(*(one(client, q, a) for q, a in items))
    scores = tuple(None if reply is None else parse_verdict(reply) for reply in outcomes)
    failed = sum(reply is None for reply in outcomes)
    return Verdicts(scores=scores, unparsable=sum(s is None for s in scores) - failed, failed=failed)


async def _ask(client: httpx.AsyncClient, judge: Judge, messages: list[dict], attempts: int) -> str | None:
    """The judge's reply text, or None when every attempt failed (an error, a timeout, no text)."""
    body = {"model": judge.model, "messages": messages, "temperature": 0, "max_tokens": GRADING_MAX_TOKENS}
    url = judge.endpoint.api_base + "/chat/completions"
    for attempt in range(attempts):
        try:
            reply = await client.post(url, json=body, headers=headers(judge.endpoint),
                                      timeout=judge.endpoint.timeout_s)
        except httpx.HTTPError:
            reply = None
        if reply is not None and reply.status_code == 200:
            try:
                text = reply.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                return None
            return text if isinstance(text, str) else None
        if reply is not None and reply.status_code < 500 and reply.status_code != 429:
            return None  # the judge refused the request: asking again changes nothing
        if attempt + 1 < attempts:
            await asyncio.sleep(min(8.0, 0.5 * 2**attempt))
    return None
