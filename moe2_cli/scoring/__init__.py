"""Scores from operation: logged answers become outcome rows (``moe2 score``).

Every (query, expert, answer) of a ``serve --log`` directory gets a score from the first of:

1. the client's feedback score, for the answer the client got;
2. the client's reference answer (feedback), for every answer to that query, by ``reference_scorer``;
3. a prompt set's reference, when the query's text is a prompt of the set, by that prompt's scorer;
4. the judge, when there is one;

else it stays missing. An outcome row per query holds a score per LLM (the mean when several
of its experts answered), ``null`` for an LLM without one; a query without any score is left out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from moe2_cli.fileio import atomic_output
from moe2_cli.measure.prompts import Prompt, load_prompts
from moe2_cli.measure.scorers import SCORERS, score
from moe2_cli.progress import ProgressCallback, no_progress
from moe2_cli.scoring.judge import Judge, judge_all
from moe2_cli.scoring.logs import LogContents, read_log

SOURCES = ("feedback", "reference", "prompt-set", "judge")


@dataclass(frozen=True)
class ScoreSettings:
    prompts: Path | None = None  # None: the shipped prompt set
    reference_scorer: str = "contains"
    judge: Judge | None = None
    concurrency: int = 4
    attempts: int = 3


@dataclass
class Scored:
    """The outcome rows, and how each answer got its score (or why not)."""

    rows: list[dict]
    answers: int = 0
    by_source: Counter = field(default_factory=Counter)
    missing: int = 0
    unparsable: int = 0
    judge_failed: int = 0
    skipped_lines: int = 0
    unscored_queries: int = 0


def llm_of(expert: str) -> str:
    """The LLM of an expert id ``server/llm`` (outcomes are keyed by LLM)."""
    return expert.split("/", 1)[1] if "/" in expert else expert


def score_log(log: Path, settings: ScoreSettings = ScoreSettings(),
              progress: ProgressCallback = no_progress) -> Scored:
    """Read the log at ``log`` and score every answer in it (see the module docstring)."""
    if settings.reference_scorer not in SCORERS:
        raise ValueError(f"reference_scorer must be one of {', '.join(SCORERS)} (got {settings.reference_scorer!r})")
    contents = read_log(log)
    known = {p.text.strip(): p for p in load_prompts(settings.prompts)}
    scores, sources = _from_references(contents, known, settings.reference_scorer)
    unparsable = failed = 0
    if settings.judge is not None:
        unparsable, failed = _from_judge(contents, scores, sources, settings, progress)
    result = Scored(rows=_rows(contents, scores), answers=len(contents.answers), by_source=Counter(sources.values()),
                    missing=len(contents.answers) - len(sources), unparsable=unparsable, judge_failed=failed,
                    skipped_lines=contents.skipped)
    result.unscored_queries = len({a.query for a in contents.answers}) - len(result.rows)
    return result


def _from_references(contents: LogContents, known: Mapping[str, Prompt],
                     reference_scorer: str) -> tuple[dict[int, float], dict[int, str]]:
    """Scores (by answer index) from feedback and prompt-set references, and where each came from."""
    given = {f.id: f.score for f in contents.feedback if f.score is not None}  # the last one counts
    references = {f.id: f.references for f in contents.feedback if f.references is not None}
    scores: dict[int, float] = {}
    sources: dict[int, str] = {}
    for i, answer in enumerate(contents.answers):
        own, refs = given.get(answer.query), references.get(answer.query)
        asked = (contents.queries[answer.query].text or "").strip()
        prompt = known.get(asked)
        if answer.returned and own is not None:
            scores[i], sources[i] = own, "feedback"
        elif answer.text is not None and refs is not None:
            scores[i], sources[i] = score(reference_scorer, answer.text, refs, asked), "reference"
        elif answer.text is not None and prompt is not None:
            scores[i], sources[i] = score(prompt.scorer, answer.text, prompt.references, prompt.text), "prompt-set"
    return scores, sources


def _from_judge(contents: LogContents, scores: dict[int, float], sources: dict[int, str], settings: ScoreSettings,
                progress: ProgressCallback) -> tuple[int, int]:
    assert settings.judge is not None
    asked = [i for i, a in enumerate(contents.answers)
             if i not in scores and a.text is not None and contents.queries[a.query].text is not None]
    items = [(contents.queries[contents.answers[i].query].text or "", contents.answers[i].text or "") for i in asked]
    verdicts = judge_all(settings.judge, items, concurrency=settings.concurrency, attempts=settings.attempts,
                         progress=progress)
    for i, verdict in zip(asked, verdicts.scores):
        if verdict is not None:
            scores[i], sources[i] = verdict, "judge"
    return verdicts.unparsable, verdicts.failed


def _rows(contents: LogContents, scores: dict[int, float]) -> list[dict]:
    llms = list(dict.fromkeys(llm_of(a.expert) for a in contents.answers))
    per_query: dict[str, dict[str, list[float]]] = {}
    for i, answer in enumerate(contents.answers):
        if i in scores:
            per_query.setdefault(answer.query, {}).setdefault(llm_of(answer.expert), []).append(scores[i])
    with_text = all(contents.queries[q].text is not None for q in per_query)
    rows = []
    for qid, got in per_query.items():
        query = contents.queries[qid]
        row: dict = {"qid": qid, "category": query.category}
        if with_text:
            row["text"] = query.text
        if query.tags is not None:
            row["tags"] = list(query.tags)
        row["scores"] = {llm: sum(got[llm]) / len(got[llm]) if llm in got else None for llm in llms}
        rows.append(row)
    return rows


def write_rows(rows: list[dict], path: Path) -> None:
    """The rows as moe2's JSONL outcome format (docs/outcomes.md); the file appears whole or not at all."""
    with atomic_output(path, "wb") as out:
        for row in rows:
            out.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
