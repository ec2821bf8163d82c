"""What every scorer shares: the verdict, reasoning blocks, the SQuAD normalisation and echo
lines; and the text scorers ``exact``, ``f1`` and ``contains``."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
# A reply line this long that occurs in the question repeats it: a base model continuing the prompt.
_ECHO_WORDS = 4
# Where a short answer states itself: after "answer is"/"answer:", or in bold.
_STATED = re.compile(r"\banswer\s*(?:is|would be|should be|:)\s*:?\s*([^\n.;]+)", re.IGNORECASE)
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_COPULA = re.compile(r"\b(?:is|was|are|were)\s+(.+)$", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[,;(\u2013\u2014]|\s-\s")
_TIGHT = re.compile(r"\s*([^\w\s])\s*")


@dataclass(frozen=True)
class Verdict:
    """A score in [0, 1] and the text of the answer it rests on (None when nothing matched)."""

    score: float
    matched: str | None = None


NOTHING = Verdict(0.0, None)


def strip_reasoning(answer: str) -> str:
    return _THINK.sub("", answer).strip()


def normalise(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD normalisation)."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def is_echo(line: str, question: str) -> bool:
    """Whether a reply line repeats a line's worth of the question (not a short answer that
    happens to occur in it)."""
    said = normalise(line)
    return bool(question) and len(said.split()) >= _ECHO_WORDS and f" {said} " in f" {normalise(question)} "


def drop_echo(answer: str, question: str) -> str:
    """The answer without the lines that repeat the question."""
    return "\n".join(line for line in answer.splitlines() if not is_echo(line, question))


def best(verdicts: Sequence[Verdict]) -> Verdict:
    """The best verdict over the references; the first of equals."""
    return max(verdicts, key=lambda v: v.score, default=NOTHING)


def score_exact(answer: str, references: Sequence[str], question: str = "") -> Verdict:
    said = drop_echo(answer, question).strip()
    return best([Verdict(1.0, said) for r in references if normalise(said) == normalise(r)])


def _f1(answer: str, reference: str) -> float:
    got, want = normalise(answer).split(), normalise(reference).split()
    common = sum((Counter(got) & Counter(want)).values())
    if not got or not want or common == 0:
        return float(got == want)
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def short_answers(answer: str) -> list[str]:
    """Where a short answer can be: the whole reply, what follows "answer is", bold text, the
    first line, what follows its first "is"/"was" ("It was Napster."), and its first clause
    unless it offers alternatives ("X or Y" is a guess, not an answer)."""
    lines = [line.strip() for line in answer.splitlines() if line.strip()]
    spans = [answer] + [m.group(1) for m in _STATED.finditer(answer)] + _BOLD.findall(answer)
    if lines:
        spans.append(lines[0])
        spans += _COPULA.findall(lines[0])[:1]
        if " or " not in lines[0]:
            spans.append(_CLAUSE_END.split(lines[0], maxsplit=1)[0])
    return [s.strip() for s in spans if s.strip()]


def score_f1(answer: str, references: Sequence[str], question: str = "") -> Verdict:
    """Token F1 of the best short answer against the best reference (SQuAD's F1, taken over
    the places a short answer is stated, so "The answer is Napster." is not diluted)."""
    spans = short_answers(drop_echo(answer, question))
    return best([Verdict(_f1(span, reference), span) for reference in references for span in spans
                 if _f1(span, reference) > 0])


def _tight(text: str) -> str:
    """Lower case, single spaces, none beside punctuation: ``def f (x)`` reads as ``def f(x)``."""
    return _TIGHT.sub(r"\1", " ".join(text.lower().split()))


def score_contains(answer: str, references: Sequence[str], question: str = "") -> Verdict:
    haystack = _tight(drop_echo(answer, question))
    return best([Verdict(1.0, reference) for reference in references
                 if reference.strip() and _tight(reference) in haystack])
