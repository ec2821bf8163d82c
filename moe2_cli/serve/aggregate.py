"""Combine the answers of the experts that answered: ``top`` or ``vote``.

Weights are the gate's softmax over the answering experts' scores, so when a fallback stands in
for a failed expert the weights are those of the gate restricted to the experts that answered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from moe2_cli.serve import AGGREGATES
from moe2_cli.serve.routing import Pick
from moe2_cli.serve.upstream import Answer

_SPACE = re.compile(r"\s+")
_EDGE_PUNCTUATION = ".,;:!?\"'`()[]{}"


@dataclass(frozen=True)
class Combined:
    answer: Answer  # returned as it is
    source: Pick  # the expert whose answer is returned
    weights: dict[str, float]  # expert -> weight among the experts that answered
    votes: int  # experts that gave the returned (normalised) answer
    how: str  # the aggregation applied: ``vote`` falls back to ``top`` when it cannot vote
    note: str | None = None  # why it fell back

    @property
    def text(self) -> str:
        return self.answer.text


def normalise(text: str) -> str:
    """What two answers must share to count as the same vote: case, spacing and enclosing
    punctuation are ignored ("B." and " b" agree)."""
    return _SPACE.sub(" ", text).strip().strip(_EDGE_PUNCTUATION).strip().casefold()


def answer_weights(picks: Sequence[Pick]) -> list[float]:
    top = max(p.score for p in picks)
    exps = [math.exp(p.score - top) for p in picks]
    return [e / sum(exps) for e in exps]


def why_not_vote(answers: Sequence[Answer], n: int) -> str | None:
    """Votes compare one text per expert; None when these answers allow it."""
    if n > 1:
        return f"n={n}: one expert's choices are returned together"
    kinds = sorted({a.kind for a in answers})
    if kinds != ["text"]:
        return f"only text answers are voted on (got {', '.join(kinds)})"
    return None


def combine(answered: Sequence[tuple[Pick, Answer]], how: str, n: int = 1) -> Combined:
    """The answer to return; ``answered`` is non-empty. ``top``: the highest-weight expert's.
    ``vote``: the most frequent normalised answer, ties to the larger summed weight, then to the
    higher-weight expert; the returned answer is that answer's highest-weight expert's. A vote
    over anything but one text per expert (tool calls, refusals, n > 1) is ``top``, with a note."""
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)} (got {how!r})")
    picks = [p for p, _ in answered]
    weights = answer_weights(picks)
    by_weight = sorted(range(len(picks)), key=lambda i: (-weights[i], picks[i].index))
    note = why_not_vote([a for _, a in answered], n) if how == "vote" else None
    if how == "top" or note is not None:
        best = by_weight[0]
        return Combined(answered[best][1], picks[best], _named(picks, weights), 1, "top", note)
    groups: dict[str, list[int]] = {}
    for i in by_weight:
        groups.setdefault(normalise(answered[i][1].text), []).append(i)
    # Members are in weight order, so a group's first is its highest-weight expert.
    winner = max(groups.values(), key=lambda g: (len(g), sum(weights[i] for i in g), weights[g[0]], -picks[g[0]].index))
    return Combined(answered[winner[0]][1], picks[winner[0]], _named(picks, weights), len(winner), "vote")


def _named(picks: Sequence[Pick], weights: list[float]) -> dict[str, float]:
    return {p.expert: w for p, w in zip(picks, weights)}
