"""`moe2 route`: the same routing as the core, in every format; bad files fail before training."""

from __future__ import annotations

import csv
import io
import json

from moe2_cli.serve.queries import read_queries
from moe2_cli.serve.routing import route_queries
from tests.serve.conftest import EXPERTS, base_plan, write_scenario, write_selection  # noqa: F401 (fixture)

URLS = {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"}


def _queries(path):
    path.write_text("".join(json.dumps({"id": f"q{i}", "category": ("mcq", "math")[i % 2], "text": text,
                                        "tags": ["x", "y"] if i == 0 else []}) + "\n"
                            for i, text in enumerate(["algebra equation", "history empire", "poetry sonnet",
                                                      "chemistry molecule"])))
    return path


def test_csv_rows_are_the_routing_core_s(run_cli, tmp_path, base_plan):  # noqa: F811 (the fixture)
    scenario, subset = write_scenario(tmp_path, URLS), EXPERTS[1:]
    selection = write_selection(tmp_path, subset)
    queries = _queries(tmp_path / "q.jsonl")
    result = run_cli("route", scenario, "--queries", queries, "--selection", selection, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    mask = sum(1 << EXPERTS.index(e) for e in subset)
    expected = route_queries(base_plan.router, base_plan.scenario.instance, mask, 2,
                             read_queries(queries, ("mcq", "math")))
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", "q3"]
    assert rows[0]["tags"] == "x y"
    for row, route in zip(rows, expected):
        assert row["experts"].split() == [p.expert for p in route.chosen]
        assert [float(w) for w in row["weights"].split()] == [p.weight for p in route.chosen]
        assert row["fallbacks"].split() == [p.expert for p in route.fallbacks]
        assert set(row["experts"].split()) <= set(subset)


def test_bad_query_lines_exit_2_before_any_training(run_cli, tmp_path):
    scenario = write_scenario(tmp_path, URLS)
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": 1, "category": "math", "text": "ok"}\n{"id": 2, "category": "art", "text": "x"}\n')
    result = run_cli("route", scenario, "--queries", queries)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"{queries}:2: category must be one of mcq, math (got 'art')\n"


def test_numeric_features_beyond_a_float_are_refused_with_their_line(run_cli, tmp_path):
    """Found by fuzzing: an integer of hundreds of digits overflowed the finiteness check (exit 70)."""
    scenario = write_scenario(tmp_path, URLS)
    queries = tmp_path / "q.jsonl"
    for number, message in (("1e999", "features must be a list of finite numbers"),
                            ("9" * 400, "invalid JSON: a number longer than 100 characters")):
        queries.write_text('{"id": 1, "category": "math", "text": "ok", "features": [' + number + ']}\n')
        result = run_cli("route", scenario, "--queries", queries)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"{queries}:1: {message}"), result.stderr


def test_bad_selection_files_exit_2_with_their_place(run_cli, tmp_path):
    scenario = write_scenario(tmp_path, URLS)
    queries = _queries(tmp_path / "q.jsonl")
    selection = tmp_path / "select.json"
    cases = {
        '{"schema": "moe2.select/1",\n "selection": [}': f"{selection}:2:16: invalid JSON",
        '{"schema": "other"}': f"{selection}: not the JSON record of moe2 select",
        '{"schema": "moe2.select/1", "scenario": "edge-testbed", "selection": ["a"]}':
            f"{selection}: the selection is for scenario 'edge-testbed', not 'serve-test'",
        '{"schema": "moe2.select/1", "scenario": "serve-test", "selection": ["rtx-1/nope"]}':
            f"{selection}: selection names 'rtx-1/nope', not an expert of 'serve-test'",
        '{"schema": "moe2.select/1", "scenario": "serve-test", "selection": ["rtx-1/gemma-2-9b-it"], '
        '"router": "forest"}':
            f"{selection}: router must be one of gate, lookup, label-lookup, logreg (got 'forest')",
        '{"schema": "moe2.select/1", "scenario": "serve-test", "selection": ["rtx-1/gemma-2-9b-it"], "seed": -1}':
            f"{selection}: seed must be an integer in [0, 2147483647] (got -1)",
        # Found by fuzzing: each of these was an internal error (exit 70).
        '{"schema": "moe2.select/1", "scenario": "serve-test", "selection": ["rtx-1/gemma-2-9b-it"], '
        '"router": ["gate"]}': f"{selection}: router must be one of",
        '{"schema": "moe2.select/1", "solver": ' + "[" * 5000 + "]" * 5000 + "}":
            f"{selection}: invalid JSON: nesting deeper than 64 levels",
        '{"schema": "moe2.select/1", "top_k": ' + "9" * 5000 + "}":
            f"{selection}: invalid JSON: a number longer than 100 characters",
    }
    for text, message in cases.items():
        selection.write_text(text)
        result = run_cli("route", scenario, "--queries", queries, "--selection", selection)
        assert result.exit_code == 2, text
        assert result.stderr.startswith(message), result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    selection.write_text('{"schema": "moe2.select/1", "scenario": "serve-test", "selection": [], '
                         '"status": "infeasible"}')
    assert run_cli("route", scenario, "--queries", queries, "--selection", selection).exit_code == 1


def test_router_flag_solves_for_that_router_and_must_agree_with_a_selection(run_cli, tmp_path):
    scenario = write_scenario(tmp_path, URLS)
    queries = _queries(tmp_path / "q.jsonl")
    result = run_cli("route", scenario, "--queries", queries, "--router", "lookup", "--format", "table")
    assert result.exit_code == 0, result.stderr
    assert "top-2 lookup routing inside" in result.stdout
    selection = write_selection(tmp_path, EXPERTS)  # no router named: planned with the gate
    result = run_cli("route", scenario, "--queries", queries, "--selection", selection, "--router", "logreg")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"moe2: --router logreg contradicts {selection}, planned with router 'gate'")
    result = run_cli("route", scenario, "--queries", queries, "--router", "forest")
    assert result.exit_code == 2 and "--router must be one of gate, lookup, label-lookup, logreg" in result.stderr


def test_a_selection_is_routed_with_the_seed_it_was_planned_with(tmp_path):
    from moe2_cli.serve.plan import choose

    scenario = write_scenario(tmp_path, URLS)
    selection = tmp_path / "select.json"
    planned = {"schema": "moe2.select/1", "scenario": "serve-test", "selection": ["rtx-1/gemma-2-9b-it"]}
    selection.write_text(json.dumps({**planned, "seed": 7}))
    assert choose(scenario, selection=selection, seed=0).seed == 7
    selection.write_text(json.dumps(planned))  # an older file without a seed: the option's
    assert choose(scenario, selection=selection, seed=3).seed == 3


def test_a_query_without_a_category_is_inferred_and_its_source_recorded(run_cli, tmp_path):
    scenario = write_scenario(tmp_path, URLS)
    selection = write_selection(tmp_path, EXPERTS)
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "algebra", "text": "solve the algebra equation"}\n'
                       '{"id": "poetry", "text": "a poetry sonnet please"}\n'
                       '{"id": "named", "category": "math", "text": "a poetry sonnet please"}\n')
    result = run_cli("route", scenario, "--queries", queries, "--selection", selection)
    assert result.exit_code == 0, result.stderr
    records = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert {k: (r["category"], r["category_source"]) for k, r in records.items()} == {
        "algebra": ("math", "inferred"), "poetry": ("mcq", "inferred"), "named": ("math", "given")}
    assert 0.5 < records["algebra"]["category_probability"] <= 1 and records["named"]["category_probability"] is None
    required = run_cli("route", scenario, "--queries", queries, "--selection", selection,
                       "--category-policy", "require")
    assert required.exit_code == 2 and required.stdout == ""
    assert required.stderr.startswith(f"{queries}:1: category must be one of mcq, math (got nothing)")
    defaulted = run_cli("route", scenario, "--queries", queries, "--selection", selection,
                        "--category-policy", "default:mcq", "--format", "csv")
    assert defaulted.exit_code == 0, defaulted.stderr
    rows = list(csv.DictReader(io.StringIO(defaulted.stdout)))
    assert [(r["category"], r["source"]) for r in rows] == [("mcq", "default"), ("mcq", "default"), ("math", "given")]
