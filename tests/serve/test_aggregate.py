"""top and vote over the answers that came back; ties go to the gate's weight; a vote over
anything but one text per expert is top, and says so."""

from __future__ import annotations

import pytest

from moe2_cli.serve.aggregate import answer_weights, combine, normalise
from moe2_cli.serve.routing import Pick
from moe2_cli.serve.upstream import Answer

TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{}"}}


def _reply(text: str | None, choices: int = 1) -> dict:
    message = {"role": "assistant", "content": text} if text is not None else {
        "role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
    return {"choices": [{"index": i, "message": message, "finish_reason": "stop" if text else "tool_calls"}
                        for i in range(choices)]}


def _answered(*items: tuple[str | None, float], choices: int = 1) -> list[tuple[Pick, Answer]]:
    return [(Pick(expert=f"s/e{i}", index=i, column=i, score=score, weight=0.0),
             Answer(_reply(text, choices), 0.0)) for i, (text, score) in enumerate(items)]


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


def test_vote_over_a_tool_call_and_texts_is_top_and_says_so():
    answered = _answered(("A", 0.0), (None, 3.0), ("A", 0.5))
    combined = combine(answered, "vote")
    assert combined.how == "top" and combined.source.expert == "s/e1"
    assert combined.answer.kind == "tool_calls" and combined.answer is answered[1][1]
    assert "only text answers are voted on" in (combined.note or "")
    assert combine(_answered(("A", 0.0), ("A", 0.5), ("B", 3.0)), "vote").how == "vote"


def test_vote_with_several_choices_is_top():
    combined = combine(_answered(("A", 0.0), ("A", 0.5), ("B", 3.0), choices=2), "vote", n=2)
    assert combined.how == "top" and combined.text == "B" and "n=2" in (combined.note or "")
    assert len(combined.answer.reply["choices"]) == 2
