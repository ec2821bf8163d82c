"""The scorers against real answer styles, each with the verdict a careful human grader gives.

An entry is right when its verdict's score is above 0.5 (every scorer but f1 gives 0 or 1; an
f1 of 0.5 is half the words, as "Napster or Kazaa" against Napster). Rates are over the corpus.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from moe2_cli.measure.scorers import verdict

CORPUS = [json.loads(line) for line in (Path(__file__).parent / "scorer_corpus.jsonl").read_text("utf-8").splitlines()]
# Styles no scorer here reads as a human does; counted in the corpus rates, not required to be perfect.
KNOWN_MISSES = {"spelling_variant", "restates_question_term"}
STYLES = sorted({(e["scorer"], e["style"]) for e in CORPUS if e["style"] not in KNOWN_MISSES})


def _outcome(entry: dict) -> str:
    judged = verdict(entry["scorer"], entry["answer"], entry["references"], entry["question"])
    said = "right" if judged.score > 0.5 else "wrong"
    return "ok" if said == entry["expected"] else f"false-{said}"


def test_the_corpus_covers_every_scorer_and_the_hard_styles():
    assert len(CORPUS) >= 150
    assert {e["scorer"] for e in CORPUS} >= {"mcq", "numeric", "f1", "contains"}
    styles = {e["style"] for e in CORPUS}
    assert {"echo_question", "option_list", "empty", "refusal", "cot_ending", "boxed_fraction"} <= styles


@pytest.mark.parametrize("scorer, style", STYLES)
def test_no_style_fools_its_scorer(scorer, style):
    wrong = [(e["answer"][:60], e["references"], _outcome(e)) for e in CORPUS
             if (e["scorer"], e["style"]) == (scorer, style) and _outcome(e) != "ok"]
    assert wrong == []


def test_corpus_error_rates(capsys):
    counts = Counter(_outcome(e) for e in CORPUS)
    rates = {kind: counts[kind] / len(CORPUS) for kind in ("false-right", "false-wrong")}
    with capsys.disabled():
        print(f"\nscorer corpus: {len(CORPUS)} answers, false-right {counts['false-right']} "
              f"({rates['false-right']:.1%}), false-wrong {counts['false-wrong']} ({rates['false-wrong']:.1%})")
    assert rates["false-right"] <= 0.02 and rates["false-wrong"] <= 0.02
