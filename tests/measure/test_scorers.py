"""Scorers and the prompt file format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moe2_cli.errors import InputError
from moe2_cli.measure import load_prompts, score
from moe2_cli.measure.prompts import default_prompts_path


@pytest.mark.parametrize("scorer, answer, reference, expected", [
    ("mcq", "The answer is: B", "B", 1.0),
    ("mcq", "C. because water boils", "B", 0.0),
    ("mcq", "<think>maybe A</think>Answer: D", "D", 1.0),
    ("mcq", "I am not sure.", "B", 0.0),
    ("numeric", "So she earned $1,250 in total.", "1250", 1.0),
    ("numeric", "... thus \\boxed{310}. Check: 300 + 10", "310", 1.0),
    ("numeric", "#### 7", "8", 0.0),
    ("exact", "The Eiffel Tower!", "eiffel tower", 1.0),
    ("f1", "Sammy Davis Jr", "Sammy Davis, Jr", 1.0),
    ("f1", "Ben", "Ben Gibbard", pytest.approx(2 / 3)),
    ("contains", "```python\ndef  count_list(lists):\n    return len(lists)\n```", "def count_list(", 1.0),
])
def test_scorers(scorer, answer, reference, expected):
    assert score(scorer, answer, [reference]) == expected


def test_best_reference_counts():
    assert score("exact", "Bayreuth", ["bayreuth germany", "Bayreuth"]) == 1.0


def test_default_prompt_set_covers_the_llmrouter_categories():
    prompts = load_prompts()
    assert default_prompts_path().name.endswith(".jsonl.gz")
    counts = {c: sum(p.category == c for p in prompts) for c in ("mcq", "math", "code", "open_qa")}
    assert counts == {"mcq": 40, "math": 40, "code": 40, "open_qa": 40}
    assert {p.scorer for p in prompts} == {"mcq", "numeric", "contains", "f1"}


def test_bad_prompt_file_reports_every_line(tmp_path):
    rows = [{"id": "a", "category": "mcq", "prompt": "x", "reference": "A", "scorer": "mcq"},
            {"id": "a", "category": "mcq", "prompt": "x", "reference": "A", "scorer": "mcq"},
            {"id": "b", "category": "mcq", "prompt": "x", "reference": "A", "scorer": "python"},
            {"id": "c", "category": "mcq", "reference": "A", "scorer": "mcq"},
            {"id": "d", "category": "mcq", "prompt": "x", "reference": [], "scorer": "exact"}]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    with pytest.raises(InputError) as caught:
        load_prompts(path)
    lines = caught.value.lines()
    assert lines[0] == f"{path}:2: duplicate id 'a'"
    assert lines[1].startswith(f"{path}:3: scorer must be one of mcq, numeric, exact, f1, contains")
    assert lines[2] == f"{path}:4: give either messages or prompt (got neither)"
    assert lines[3].startswith(f"{path}:5: reference must be")
    assert lines[4].startswith(f"{path}:6: invalid JSON")


def test_a_scorer_that_is_not_a_name_is_a_problem_of_its_line(tmp_path):
    """Found by fuzzing: a list as the scorer could not be looked up (exit 70)."""
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "category": "mcq", "prompt": "x", "reference": "A", "scorer": ["mcq"]})
                    + "\n")
    with pytest.raises(InputError) as caught:
        load_prompts(path)
    assert caught.value.lines()[0].startswith(f"{path}:1: scorer must be one of mcq")


def test_the_verdict_names_the_text_it_rests_on():
    from moe2_cli.measure.scorers import verdict
    assert verdict("mcq", "Jupiter is big. So the answer is (B).", ["B"]).matched == "answer is (B)"
    assert verdict("numeric", "\\boxed{\\frac{1}{2}}", ["0.5"]).matched == "\\boxed{\\frac{1}{2}}"
    assert verdict("mcq", "I am not sure.", ["B"]).matched is None


def test_references_may_be_given_as_a_list_under_references(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "category": "qa", "prompt": "x", "references": ["Napster", "napigator"],
                                "scorer": "f1"}) + "\n"
                    + json.dumps({"id": "b", "category": "qa", "prompt": "x", "reference": "A", "references": ["A"],
                                  "scorer": "f1"}) + "\n")
    with pytest.raises(InputError) as caught:
        load_prompts(path)
    assert caught.value.lines() == [f"{path}:2: give either reference or references (got both)"]


def test_shipped_references_pass_their_self_check():
    import subprocess
    import sys
    script = Path(__file__).parents[2] / "benchmarks" / "check_prompt_references.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(": 0 failures")


def test_the_self_check_reports_a_reference_no_answer_can_match(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "category": "mcq", "prompt": "x", "reference": "Z", "scorer": "mcq"}) + "\n")
    script = Path(__file__).parents[2] / "benchmarks" / "check_prompt_references.py"
    done = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "a: reference 'Z' does not score 1 against itself (mcq)" in done.stdout
