"""top and vote over the answers that came back; ties go to the gate's weight."""

from __future__ import annotations

import pytest

from moe2_cli.serve.aggregate import answer_weights, combine, normalise
from moe2_cli.serve.routing import Pick
from moe2_cli.serve.upstream import Answer


def _answered(*items: tuple[str, float]) -> list[tuple[Pick, Answer]]:
    return [(Pick(expert=f"s/e{i}", index=i, column=i, score=score, weight=0.0), Answer(text, {}, 0.0))
            for i, (text, score) in enumerate(items)]


def test_normalise_ignores_case_spacing_and_enclosing_punctuation():
    assert normalise("  B. ") == normalise("b") == normalise('"B"')
    assert normalise("The  answer\nis 4") == "the answer is 4"
    assert normalise("B") != normalise("C")


def test_weights_are_the_softmax_of_the_answering_experts_scores():
    weights = answer_weights([p for p, _ in _answered(("x", 2.0), ("y", 0.0))])
    assert sum(weights) == pytest.approx(1.0)
    assert weights[0] / weights[1] == pytest.approx(2.718281828 ** 2)


def test_top_returns_the_highest_weight_answer():
    combined = combine(_answered(("low", 0.5), ("high", 3.0), ("mid", 1.0)), "top")
    assert combined.text == "high" and combined.source.expert == "s/e1"


def test_vote_majority_beats_weight():
    combined = combine(_answered(("A", 5.0), ("b.", 1.0), ("B", 0.5)), "vote")
    assert normalise(combined.text) == "b" and combined.votes == 2
    assert combined.text == "b.", "the majority's highest-weight expert speaks for it"


def test_vote_tie_goes_to_the_larger_weight():
    assert combine(_answered(("A", 1.0), ("B", 2.0)), "vote").text == "B"
    assert combine(_answered(("A", 3.0), ("B", 2.0), ("B", 0.1), ("A", -5.0)), "vote").text == "A"
