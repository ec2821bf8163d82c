"""`moe2 validate` on every kind of file moe2 reads: each is told apart by its name and content,
checked by its own reader (a problem is one located line, exit 2), and summarised by what it holds."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from moe2_cli.validation import NAMES, FileKind
from tests.conftest import FIXTURES

DEFAULT_EXPERTS = ["orin-1/qwen2.5-7b-instruct", "rtx-1/qwen2.5-3b-instruct"]


def _lines(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _outcomes(n: int) -> str:
    return _lines([{"qid": f"q{i}", "category": "math" if i % 2 else "mcq", "scores": {"a": 1, "b": i % 2}}
                   for i in range(n)])


def _prompts(n: int) -> str:
    return _lines([{"id": f"p{i}", "category": ["mcq", "math", "code"][i % 3], "prompt": f"question {i}",
                    "reference": "B" if i % 3 == 0 else "4", "scorer": "mcq" if i % 3 == 0 else "numeric"}
                   for i in range(n)])


def _selection(experts: list[str], scenario: str = "edge-testbed") -> str:
    record = {"schema": "moe2.select/1", "scenario": scenario, "status": "optimal", "selection": experts,
              "top_k": 2, "router": "gate", "seed": 0}
    return json.dumps(record, indent=2) + "\n"


def _log_line(category: str, status: int = 200) -> dict:
    return {"id": "r", "category": category, "status": status, "latency_s": 0.5, "estimated_j": 30.0}


PARAMS = """name: two
top_k: 1
experts:
  - {beta0: 0.0, beta1: [1.0], a: [0.5], b: 0.0, sigma: 0.1}
  - {beta0: 0.5, beta1: [-1.0], a: [-0.5], b: 1.0, sigma: 0.2}
"""

# name -> (file text, kind, form, what the summary says). Every count comes from the text.
GOOD = {
    "out.jsonl": (_outcomes(7), "outcomes", "JSON lines", "7 queries, 2 LLMs, 2 categories"),
    "out.csv": ("qid,category,score:a,score:b,score:c\nq1,mcq,1,0,1\nq2,math,0,1,1\nq3,math,1,1,\n", "outcomes",
                "CSV", "3 queries, 3 LLMs, 2 categories"),
    "prompts.jsonl": (_prompts(9), "prompts", "JSON lines", "9 prompts, 3 categories, scored by mcq, numeric"),
    "select.json": (_selection(DEFAULT_EXPERTS), "selection", "JSON", "2 experts of 'edge-testbed', top-2, gate"),
    "queries.jsonl": (_lines([{"id": 1, "text": "2+2?", "category": "math"}, {"id": 2, "text": "hi"},
                              {"id": 3, "messages": [{"role": "user", "content": "a or b?"}]}]),
                      "queries", "JSON lines", "3 queries, 1 naming a category of 'edge-testbed'"),
    "mix.yaml": ("categories: {mcq: 0.5, math: 0.5}\ntags: {hard: 1}\n", "mix", "YAML",
                 "shares of 2 categories and 1 tag"),
    "mix.json": ('{"categories": {"mcq": 1, "math": 1, "code": 2}}\n', "mix", "JSON", "shares of 3 categories"),
    "params.yaml": (PARAMS, "params", "YAML", "model 'two': 2 experts, top-1, 1 input dimension"),
    "samples.csv": ("x1,x2,y\n0.1,0.2,1.5\n0.3,0.4,-2\n0.5,0.6,0\n", "samples", "CSV", "3 samples of 2 inputs"),
    "samples.jsonl": (_lines([{"x": [0.1], "y": 1.0}, {"x": [0.2], "y": 2.0}]), "samples", "JSON lines",
                      "2 samples of 1 input"),
    "requests.jsonl": (_lines([_log_line("mcq"), _log_line("math", 502)]), "log", "JSON lines",
                       "2 requests in 1 file"),
}

# name -> (file text, line of the problem, what the reader says there).
BAD = {
    "out.jsonl": (_outcomes(2) + '{"qid": "q9", "category": "mcq", "scores": {"a": 7}}\n', 3,
                  "score of 'a' must be a number in [0, 1] (got 7)"),
    "out.csv": ("qid,category,score:a\nq1,mcq,1\nq2,math,x\n", 3, "score"),
    "prompts.jsonl": (_prompts(2) + '{"id": "p9", "category": "mcq", "prompt": "?", "scorer": "guess", '
                                    '"reference": "A"}\n', 3, "scorer must be one of"),
    "select.json": ('{"schema": "moe2.select/1", "scenario": "edge-testbed", "selection": [],\n'
                    ' "status": "optimal"}\n', None, "selection must be a non-empty list of expert ids"),
    "queries.jsonl": (_lines([{"id": 1, "text": "ok"}, {"id": 2, "text": 5}]), 2, "text must be a string"),
    "mix.yaml": ("categories: {mcq: -1, math: 1}\n", 1, "must be a finite number >= 0 (got -1)"),
    "params.yaml": (PARAMS.replace("sigma: 0.2", "sigma: -0.2"), 5, "sigma"),
    "samples.csv": ("x1,y\n0.1,1\n0.2\n", 3, "expected 2 fields (got 1)"),
    "samples.jsonl": (_lines([{"x": [0.1], "y": 1}, {"x": [0.1, 0.2], "y": 1}]), 2,
                      "x has 2 entries, earlier lines have 1"),
    "requests.jsonl": (_lines([_log_line("mcq"), {**_log_line("math"), "latency_s": -1}]), 2,
                       "latency_s must be a number >= 0 (got -1)"),
}


def _json(result) -> list[dict]:
    return json.loads(result.stdout)


def test_every_kind_has_a_good_and_a_broken_case():
    kinds = {kind for _, kind, _, _ in GOOD.values()} | {"scenario", "profile"}
    assert kinds == set(NAMES) == {k.value for k in FileKind}
    assert {GOOD[name][1] for name in BAD} | {"scenario", "profile"} == set(NAMES)


@pytest.mark.parametrize("name", GOOD)
def test_a_good_file_says_what_it_holds(run_cli, tmp_path, name):
    text, kind, form, summary = GOOD[name]
    path = tmp_path / name
    path.write_text(text)
    result = run_cli("validate", path, "--format", "json")
    assert result.exit_code == 0, result.output
    [record] = _json(result)
    assert (record["kind"], record["form"], record["ok"]) == (kind, form, True)
    assert record["summary"].startswith(summary), record["summary"]


@pytest.mark.parametrize("name", BAD)
def test_a_broken_file_is_one_located_line_and_exit_2(run_cli, tmp_path, name):
    text, line, needle = BAD[name]
    path = tmp_path / name
    path.write_text(text)
    result = run_cli("validate", path, "--format", "json")
    assert result.exit_code == 2, result.output
    [record] = _json(result)
    assert record["kind"] == GOOD[name][1] and record["ok"] is False
    [problem] = result.stderr.splitlines()
    place = f"{path}:{line}" if line else f"{path}: "
    assert problem.startswith(place) and needle in problem, problem
    assert "Traceback" not in result.output


# CSV is told by its header (below); `select --mix` reads a mix only from a YAML or JSON name.
@pytest.mark.parametrize("name", [n for n in GOOD if not n.endswith(".csv") and not n.startswith("mix")])
def test_without_a_telling_name_the_content_decides(run_cli, tmp_path, name):
    """The same text under a name that says nothing (and gzipped under its own name) is the same kind."""
    text, kind, form, summary = GOOD[name]
    bare = tmp_path / "data"
    bare.write_text(text)
    packed = tmp_path / (name + ".gz")
    packed.write_bytes(gzip.compress(text.encode()))
    files = [bare] if kind in ("params", "selection") else [bare, packed]  # YAML and JSON are read whole
    result = run_cli("validate", *files, "--format", "json")
    assert result.exit_code == 0, result.output
    assert [(r["kind"], r["ok"]) for r in _json(result)] == [(kind, True)] * len(files)


def test_a_csv_header_tells_samples_and_names_the_rule_for_outcomes(run_cli, tmp_path):
    """Samples are read as CSV under any name; outcomes only under a .csv name, and validate says so."""
    samples, outcomes = tmp_path / "b", tmp_path / "a"
    samples.write_text(GOOD["samples.csv"][0])
    outcomes.write_text(GOOD["out.csv"][0])
    result = run_cli("validate", samples, outcomes, "--format", "json")
    assert result.exit_code == 2
    assert [(r["kind"], r["ok"]) for r in _json(result)] == [("samples", True), ("?", False)]
    assert result.stderr.strip() == (f"{outcomes}:1:1: CSV outcomes are read only from a name ending in .csv or "
                                     ".csv.gz; rename the file")


def test_shipped_and_fixture_files_of_every_other_form(run_cli, tmp_path):
    """A scenario, a profile, LLMRouter outcomes, an lm-eval folder, the shipped prompt set and a
    serve log folder."""
    root = FIXTURES.parent.parent
    log = tmp_path / "log"
    log.mkdir()
    (log / "requests.jsonl").write_text(_lines([_log_line("mcq")]))
    (log / "requests.jsonl.1").write_text(_lines([_log_line("math")] * 3))
    files = [FIXTURES / "good" / "scenario.yaml", FIXTURES / "good" / "profiles" / "tiny-device.yaml",
             root / "examples" / "data" / "llmrouter-outcomes.jsonl.gz", FIXTURES / "lm_eval" / "good",
             root / "examples" / "data" / "llmrouter-prompts.jsonl.gz", log]
    result = run_cli("validate", *files, "--format", "json")
    assert result.exit_code == 0, result.output
    records = _json(result)
    assert [(r["kind"], r["form"]) for r in records] == [
        ("scenario", "YAML"), ("profile", "YAML"), ("outcomes", "LLMRouter JSON lines"),
        ("outcomes", "lm-evaluation-harness samples"), ("prompts", "JSON lines"), ("log", "JSON lines")]
    assert records[-1]["summary"] == "4 requests in 2 files"


def test_outcomes_are_no_longer_read_as_yaml(run_cli, tmp_path):
    path = tmp_path / "outcomes.jsonl"
    path.write_text(_outcomes(3))
    result = run_cli("validate", path)
    assert result.exit_code == 0, result.output
    assert "outcomes (JSON lines)" in result.stdout and "3 queries, 2 LLMs, 2 categories" in result.stdout
    assert "YAML" not in result.output


@pytest.mark.parametrize("name, text, line", [
    ("notes.txt", "just some words\n", 1), ("x.jsonl", '{"colour": "red"}\n', 1),
    ("x.jsonl", "\nnot json\n", 2), ("x.csv", "a,b\n1,2\n", 1), ("x.yaml", "colour: red\n", 1),
    ("x.json", '{\n  "colour": "red"\n}\n', None)])
def test_an_unknown_kind_lists_the_kinds_it_knows(run_cli, tmp_path, name, text, line):
    path = tmp_path / name
    path.write_text(text)
    result = run_cli("validate", path, "--format", "json")
    assert result.exit_code == 2 and _json(result)[0]["kind"] == "?"
    [problem] = result.stderr.splitlines()
    assert problem.startswith(f"{path}:{line}:" if line else f"{path}: "), problem
    assert "cannot tell which kind of moe2 file this is" in problem and "--kind" in problem
    assert ", ".join(NAMES) in problem


def test_an_empty_file_says_so(run_cli, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("\n\n")
    result = run_cli("validate", path)
    assert result.exit_code == 2 and result.stderr.strip() == f"{path}: file is empty"


def test_kind_forces_the_reader(run_cli, tmp_path):
    """Prompts checked as outcomes get the outcome reader's diagnostics; the right --kind passes
    a file whose name and content tell nothing."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(_prompts(2))
    result = run_cli("validate", prompts, "--kind", "outcomes")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith(f"{prompts}:1: scores must be an object")
    samples = tmp_path / "s.txt"
    samples.write_text("u,y\n1,2\n")  # the samples reader takes any header ending in y; detection wants x1,...
    assert run_cli("validate", samples).exit_code == 2
    result = run_cli("validate", samples, "--kind", "samples", "--format", "json")
    assert result.exit_code == 0 and _json(result)[0]["summary"] == "1 sample of 1 input"
    result = run_cli("validate", samples, "--kind", "bogus")
    assert result.exit_code == 2 and "bogus" in result.stderr


def test_a_selection_is_checked_against_the_scenario_given(run_cli, tmp_path):
    path = tmp_path / "select.json"
    path.write_text(_selection(DEFAULT_EXPERTS))
    result = run_cli("validate", path, "--scenario", "default", "--format", "json")
    assert result.exit_code == 0, result.output
    assert _json(result)[0]["summary"] == "2 experts of 'edge-testbed', top-2, gate router"
    result = run_cli("validate", path, "--scenario", "large")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"{path}: the selection is for scenario 'edge-testbed'")
    path.write_text(_selection(["orin-1/nope"]))
    assert "not checked" in _json(run_cli("validate", path, "--format", "json"))[0]["summary"]
    result = run_cli("validate", path, "--scenario", "default")
    assert result.exit_code == 2 and "selection names 'orin-1/nope'" in result.stderr


def test_queries_are_checked_against_the_scenarios_categories(run_cli, tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(_lines([{"id": 1, "text": "x", "category": "math"}, {"id": 2, "text": "y", "category": "poetry"}]))
    result = run_cli("validate", path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}:2: category must be one of")


def test_many_files_report_each_and_fail_if_any_fails(run_cli, tmp_path):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text(_outcomes(4))
    bad.write_text(BAD["out.jsonl"][0])
    result = run_cli("validate", good, bad, "--format", "csv")
    assert result.exit_code == 2
    rows = result.stdout.splitlines()
    assert rows[0] == "path,kind,form,ok,summary"
    assert rows[1].startswith(f"{good},outcomes,JSON lines,True,") and rows[2] == f"{bad},outcomes,,False,1 problem"
    assert all(line.startswith(f"{bad}:") for line in result.stderr.splitlines())


def test_standard_input_is_refused_without_a_kind(run_cli):
    result = run_cli("validate", "-")
    assert result.exit_code == 2
    assert result.stderr.strip() == "<stdin>: validate checks files, not standard input; give a file"


def test_a_moved_fixture_keeps_its_kind(run_cli, tmp_path):
    """Detection reads the content, not the folder: a profile copied under another name is a profile."""
    copy = tmp_path / "whatever"
    shutil.copy(FIXTURES / "good" / "profiles" / "tiny-device.yaml", copy)
    result = run_cli("validate", copy, "--format", "json")
    assert result.exit_code == 0 and _json(result)[0]["kind"] == "profile"


def test_text_that_is_no_kind_of_file_says_what_was_tried(run_cli, tmp_path):
    """The issue's complaint: a file that is not YAML is not answered "invalid YAML" alone."""
    path = tmp_path / "NOTES"
    path.write_text("# Notes\n\nsee: the page: below\n")
    result = run_cli("validate", path)
    assert result.exit_code == 2
    [problem] = result.stderr.splitlines()
    assert problem.startswith(f"{path}:3:") and "cannot tell which kind of moe2 file this is (not JSON, CSV or " \
                                                 "YAML: invalid YAML" in problem, problem
