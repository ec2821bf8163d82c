"""Score an answer against its references: a :class:`Verdict`, a score in [0, 1] and the text
of the answer it rests on, so a person can audit it. Generated code is never run.

- ``mcq``: the option letter the answer explicitly chooses equals the reference letter
  (:mod:`.mcq` lists what counts as a choice);
- ``numeric``: the number the answer gives as its answer equals the reference number within a
  tolerance (:mod:`.numeric`);
- ``exact``: the normalised answer equals a normalised reference;
- ``f1``: token F1 between the answer's short answer and the reference (SQuAD style);
- ``contains``: a reference occurs in the answer (case and spacing ignored).

A prompt's references are alternatives: the best match counts. Reasoning blocks
(``<think>...</think>``) are dropped first: they are not the answer. Given the question, every
scorer ignores the reply's lines that repeat it, since an echoed question answers nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from moe2_cli.measure.scorers.mcq import score_mcq
from moe2_cli.measure.scorers.numeric import score_numeric
from moe2_cli.measure.scorers.text import (
    NOTHING,
    Verdict,
    normalise,
    score_contains,
    score_exact,
    score_f1,
    strip_reasoning,
)

NO_VERDICT = NOTHING  # a failed request's: score 0, nothing matched
Scorer = Callable[[str, Sequence[str], str], Verdict]

SCORERS: dict[str, Scorer] = {
    "mcq": score_mcq,
    "numeric": score_numeric,
    "exact": score_exact,
    "f1": score_f1,
    "contains": score_contains,
}


def verdict(scorer: str, answer: str, references: Sequence[str], question: str = "") -> Verdict:
    """The answer's verdict under ``scorer`` (one of :data:`SCORERS`), given the question asked
    when it is known."""
    return SCORERS[scorer](strip_reasoning(answer), references, question)


def score(scorer: str, answer: str, references: Sequence[str], question: str = "") -> float:
    """The answer's score in [0, 1] (:func:`verdict` without the matched text)."""
    return verdict(scorer, answer, references, question).score


__all__ = ["NO_VERDICT", "SCORERS", "Scorer", "Verdict", "normalise", "score", "strip_reasoning", "verdict"]
