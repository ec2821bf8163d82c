"""What a ``moe2 serve --log DIR`` directory holds, read back: every (query, expert, answer) and
every piece of client feedback.

A request line gives the answer of ``answer_from`` to the request ``id``. A shadow line
(``"shadow": true``) gives the answer of its one expert (``answer_from``) to the request named
by ``shadow_of``, and may leave the category and prompt to that request's line. Rotated files
(``requests.jsonl.4`` … ``.1``) are read before the current one, oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.outcomes.rows import Problems, as_score, describe, json_lines

REQUESTS = "requests.jsonl"
FEEDBACK = "feedback.jsonl"
ROTATED = 4  # requests.jsonl.1 .. .4, as serve keeps them


@dataclass(frozen=True)
class Query:
    """One request as the log tells it: its category, tags and the text of its user turns
    (None when the log has no text)."""

    id: str
    category: str
    text: str | None
    tags: tuple[str, ...] | None


@dataclass(frozen=True)
class Answer:
    """One expert's answer to one query; ``text`` is None when the log kept no text, and
    ``returned`` says whether the client got it (not a shadow)."""

    query: str
    expert: str
    text: str | None
    returned: bool


@dataclass(frozen=True)
class Feedback:
    """A client's score of the answer it got, or its reference answer; ``id`` is the request's
    id (feedback naming a completion id is mapped to its request)."""

    id: str
    score: float | None
    references: tuple[str, ...] | None


@dataclass
class LogContents:
    queries: dict[str, Query]
    answers: list[Answer]
    feedback: list[Feedback]
    skipped: int  # request lines without an answer: failed, refused, or a shadow of an unknown request
    request_of: dict[str, str] = field(default_factory=dict)  # completion id -> request id


def log_files(log: Path, name: str) -> list[Path]:
    """``name`` in the directory ``log`` with its rotations, oldest first (only those present)."""
    paths = [log / f"{name}.{i}" for i in range(ROTATED, 0, -1)] + [log / name]
    return [p for p in paths if p.is_file()]


def read_log(log: Path) -> LogContents:
    """Read a log directory (or one requests file); every bad line is reported as ``path:line``."""
    if log.is_dir():
        requests, feedback = log_files(log, REQUESTS), log_files(log, FEEDBACK)
    elif log.is_file():
        requests, feedback = [log], []
    else:
        raise InputError(Diagnostic(str(log), None, None, "no such log directory or file"))
    if not requests:
        raise InputError(Diagnostic(str(log), None, None, f"no {REQUESTS} in the log directory"))
    contents = LogContents(queries={}, answers=[], feedback=[], skipped=0)
    shadows: list[tuple[Query | None, Answer]] = []
    errors: list[Diagnostic] = []
    for path in requests:
        problems = Problems(str(path))
        for line, row in json_lines(path, "request log", problems):
            _request_line(problems, line, row, contents, shadows)
        errors += _collected(problems)
    for path in feedback:
        problems = Problems(str(path))
        for line, row in json_lines(path, "feedback log", problems):
            item = _feedback_line(problems, line, row)
            if item is not None:
                contents.feedback.append(replace(item, id=contents.request_of.get(item.id, item.id)))
        errors += _collected(problems)
    if errors:
        raise InputError(errors)
    _add_shadows(contents, shadows)
    return contents


def _collected(problems: Problems) -> list[Diagnostic]:
    """Every problem of one file, with the count of those past the limit."""
    try:
        problems.raise_if_any()
    except InputError:
        pass
    return problems.items


def _request_line(problems: Problems, line: int, row: dict[str, Any], contents: LogContents,
                  shadows: list[tuple[Query | None, Answer]]) -> None:
    shadow = row.get("shadow") is True
    rid = row.get("shadow_of") if shadow else row.get("id")
    if not isinstance(rid, str) or not rid:
        return problems.add(line, f"{'shadow_of' if shadow else 'id'} must be a non-empty string (got {describe(rid)})")
    expert, answers = row.get("answer_from"), row.get("answer")
    texts_ok = isinstance(answers, list) and all(a is None or isinstance(a, str) for a in answers)
    if answers is not None and not texts_ok:
        return problems.add(line, f"answer must be a list of texts (got {describe(answers)})")
    query = _query(problems, line, row, rid, required=not shadow)
    if query is False:
        return None
    assert query is None or isinstance(query, Query)
    if row.get("status", 200) != 200 or not isinstance(expert, str) or not expert:
        contents.skipped += 1  # no answer to score: a failed or refused request
        return None
    answer = Answer(query=rid, expert=expert, text=answers[0] if answers else None, returned=not shadow)
    if shadow:
        shadows.append((query, answer))
    else:
        assert query is not None  # required of a request line
        if isinstance(row.get("completion_id"), str):
            contents.request_of[row["completion_id"]] = rid
        contents.queries[rid] = query  # a repeated id (a client reusing X-Request-Id): the later line
        contents.answers.append(answer)
        contents.answers += _other_answers(problems, line, row, rid)


def _other_answers(problems: Problems, line: int, row: dict[str, Any], rid: str) -> list[Answer]:
    """The answers of the request's other experts (top-k called them too; not returned)."""
    others = row.get("other_answers")
    if others is None:
        return []
    if not isinstance(others, dict) or not all(isinstance(e, str) and e and (t is None or isinstance(t, str))
                                               for e, t in others.items()):
        problems.add(line, f"other_answers must map experts to texts (got {describe(others)})")
        return []
    return [Answer(query=rid, expert=expert, text=text, returned=False) for expert, text in others.items()]


def _query(problems: Problems, line: int, row: dict[str, Any], rid: str, required: bool) -> Query | None | bool:
    """The line's query; None when a shadow line leaves it to its request; False after a problem."""
    category, tags = row.get("category"), row.get("tags")
    if category is None and not required:
        return None
    if not isinstance(category, str) or not category:
        problems.add(line, f"category must be a non-empty string (got {describe(category)})")
        return False
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) and t for t in tags)):
        problems.add(line, f"tags must be a list of non-empty strings (got {describe(tags)})")
        return False
    return Query(id=rid, category=category, text=prompt_text(row.get("prompt")),
                 tags=None if tags is None else tuple(tags))


def prompt_text(prompt: Any) -> str | None:
    """The user turns of a logged prompt (chat messages, or a completion's prompt), joined by
    newlines as a prompt set's text is; None when there is no text."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if not isinstance(prompt, list):
        return None
    turns = [_content(m.get("content")) for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return "\n".join(turns) if turns else None


def _content(content: Any) -> str:
    if isinstance(content, list):  # the parts form of the chat API
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


def _add_shadows(contents: LogContents, shadows: list[tuple[Query | None, Answer]]) -> None:
    """Shadow answers join their request's query; one whose request is not in the log brings its own."""
    for own, answer in shadows:
        if answer.query not in contents.queries:
            if own is None:
                contents.skipped += 1  # its request rotated out of the log, and it carries no category
                continue
            contents.queries[answer.query] = own
        contents.answers.append(answer)


def _feedback_line(problems: Problems, line: int, row: dict[str, Any]) -> Feedback | None:
    rid, score, reference = row.get("id"), row.get("score"), row.get("reference")
    if not isinstance(rid, str) or not rid:
        problems.add(line, f"id must be a non-empty string (got {describe(rid)})")
        return None
    if score is not None:
        value = as_score(score)
        if value is None:
            problems.add(line, f"score must be a number in [0, 1] (got {describe(score)})")
            return None
        return Feedback(id=rid, score=value, references=None)
    items = reference if isinstance(reference, list) else [reference]
    if not items or not all(isinstance(r, str) and r.strip() for r in items):
        problems.add(line, f"give a score or a reference (text or a list of texts) (got {describe(reference)})")
        return None
    return Feedback(id=rid, score=None, references=tuple(str(r) for r in items))
