"""Score an answer against a reference: a number in [0, 1]. Generated code is never run.

- ``mcq``: the option letter the answer chooses equals the reference letter;
- ``numeric``: the final number of the answer (``\\boxed{}``, ``#### N`` or the last number,
  GSM8K style) equals the reference number;
- ``exact``: the normalised answer equals a normalised reference;
- ``f1``: token F1 between the normalised answer and the best reference (SQuAD style);
- ``contains``: a reference occurs in the answer (case and runs of whitespace ignored).

A reference is a string or a list of acceptable strings; the best match counts. Reasoning
blocks (``<think>...</think>``) are dropped before scoring: they are not the answer.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_BOXED = re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_HASHES = re.compile(r"####\s*(.+)")
# Where an answer states its choice, in order of trust; the last statement wins.
_MCQ_STATED = (
    re.compile(r"(?i:answer)\s*(?:(?i:is)\s*:?|:)?\s*(?:(?i:option)\s*)?\(?\**\s*([A-J])\b"),
    re.compile(r"\\boxed\{\s*\(?([A-J])\)?\s*\}"),
    re.compile(r"^\s*\(?\**([A-J])\**\)?\s*(?:[.):]|$)", re.MULTILINE),
    re.compile(r"\(([A-J])\)"),
)

Scorer = Callable[[str, Sequence[str]], float]


def strip_reasoning(answer: str) -> str:
    return _THINK.sub("", answer).strip()


def normalise(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD normalisation)."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def chosen_letter(answer: str) -> str | None:
    """The option letter an answer commits to, or None when it names none."""
    for pattern in _MCQ_STATED:
        found = pattern.findall(answer)
        if found:
            return found[-1].upper()
    return None


def final_number(text: str) -> float | None:
    """The number an answer ends on: inside the last ``\\boxed{}``, after ``####``, else the last one."""
    for pattern in (_BOXED, _HASHES):
        marked = pattern.findall(text)
        if marked:
            numbers = _NUMBER.findall(marked[-1])
            if numbers:
                return _as_float(numbers[-1])
    numbers = _NUMBER.findall(text)
    return _as_float(numbers[-1]) if numbers else None


def _as_float(token: str) -> float | None:
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


def score_mcq(answer: str, references: Sequence[str]) -> float:
    letter = chosen_letter(answer)
    return float(letter is not None and any(letter == r.strip().upper() for r in references))


def score_numeric(answer: str, references: Sequence[str]) -> float:
    got = final_number(answer)
    if got is None:
        return 0.0
    for reference in references:
        want = final_number(reference)
        if want is not None and abs(got - want) <= 1e-6 * max(1.0, abs(want)):
            return 1.0
    return 0.0


def score_exact(answer: str, references: Sequence[str]) -> float:
    return float(any(normalise(answer) == normalise(r) for r in references))


def _f1(answer: str, reference: str) -> float:
    got, want = normalise(answer).split(), normalise(reference).split()
    common = sum((Counter(got) & Counter(want)).values())
    if not got or not want or common == 0:
        return float(got == want)
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def score_f1(answer: str, references: Sequence[str]) -> float:
    return max((_f1(answer, r) for r in references), default=0.0)


def score_contains(answer: str, references: Sequence[str]) -> float:
    haystack = " ".join(answer.lower().split())
    return float(any(" ".join(r.lower().split()) in haystack for r in references if r.strip()))


SCORERS: dict[str, Scorer] = {
    "mcq": score_mcq,
    "numeric": score_numeric,
    "exact": score_exact,
    "f1": score_f1,
    "contains": score_contains,
}


def score(scorer: str, answer: str, references: Sequence[str]) -> float:
    """The answer's score in [0, 1] under ``scorer`` (one of :data:`SCORERS`)."""
    return SCORERS[scorer](strip_reasoning(answer), references)
