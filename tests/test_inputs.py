"""Regression tests for the reproducers of hostile or careless input, through the real CLI."""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from moe2_cli.errors import InputError
from moe2_cli.outcomes import read_outcomes, write_outcomes
from tests.conftest import ROOT
from tests.fuzzing import _small_table

PROFILE = (ROOT / "tests" / "fixtures" / "good" / "profiles" / "tiny-device.yaml").read_text()
DEFAULT = (ROOT / "examples" / "default.yaml").read_text()


def one_located_line(result, path: Path) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert all(line.startswith(str(path)) for line in lines), result.stderr
    return result.stderr


def profile_with(tmp_path, old: str, new: str) -> Path:
    assert old in PROFILE
    path = tmp_path / "profiles" / "p.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(PROFILE.replace(old, new, 1))
    return path


def first_number(key: str) -> str:
    """The first category value of ``key`` in the profile, as ``mcq: 1.0``."""
    return re.search(rf"{key}:\n +(mcq: [0-9.e+-]+)", PROFILE).group(1)


def test_yaml_12_floats_are_numbers_in_profiles(run_cli, tmp_path):
    old = first_number("latency_s")
    path = profile_with(tmp_path, "    latency_s:\n      " + old, "    latency_s:\n      mcq: 1e-3")
    result = run_cli("validate", path)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("value, needle", [("5.0e+15", "at most 1e+09"), ("1e300", "at most 1e+09"),
                                           ("1" + "0" * 5000, "not a valid"), (".inf", "finite")])
def test_energy_out_of_bounds_is_refused(run_cli, tmp_path, value, needle):
    old = "    energy_j:\n      " + first_number("energy_j")
    path = profile_with(tmp_path, old, f"    energy_j:\n      mcq: {value}")
    assert needle in one_located_line(run_cli("validate", path), path)


def test_control_character_is_one_line_with_line_and_column(run_cli, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("schema_version: 1\ndevice:\n  id: a\x07b\n")
    stderr = one_located_line(run_cli("validate", path), path)
    assert stderr.strip() == f"{path}:3:8: control character U+0007 is not allowed in YAML"


@pytest.mark.parametrize("tag", ['!!bool "maybe"', "!!int x", "!!python/object:os.system x", "!!binary AAAA"])
def test_tags_are_clean_errors(run_cli, tmp_path, tag):
    path = tmp_path / "s.yaml"
    path.write_text(DEFAULT.replace("top_k: 2", f"top_k: {tag}"))
    assert "top_k" in one_located_line(run_cli("validate", path), path)


def test_two_servers_without_names(run_cli, tmp_path):
    text = re.sub(r"  - name: \S+\n    profile", "  - profile", DEFAULT)
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert "missing required key 'name'" in one_located_line(run_cli("validate", path), path)


def test_too_many_experts_names_the_file(run_cli, tmp_path):
    llms = "[qwen2.5-7b-instruct, phi-3.5-mini-instruct, qwen2.5-1.5b-instruct]"
    servers = "".join(f"  - name: s{i}\n    profile: jetson-agx-orin-64gb\n    llms: {llms}\n" for i in range(86))
    path = tmp_path / "s.yaml"
    path.write_text(DEFAULT[:DEFAULT.index("servers:")] + "servers:\n" + servers)
    assert "at most 256 experts (got 258)" in one_located_line(run_cli("show", path), path)


def test_a_file_name_longer_than_the_os_allows(run_cli, tmp_path):
    path = tmp_path / ("x" * 400 + ".yaml")
    assert "cannot read" in one_located_line(run_cli("select", path), path)


def test_thousands_of_categories_print_a_capped_report(run_cli, tmp_path):
    cats = "".join(f"  c{i}: {{share: x}}\n" for i in range(10_000))
    path = tmp_path / "s.yaml"
    path.write_text(re.sub(r"categories:\n(  .*\n)+", "categories:\n" + cats, DEFAULT, count=1))
    result = run_cli("validate", path)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 51, result.stderr[-500:]
    assert re.fullmatch(rf"{re.escape(str(path))}: \.\.\. and \d+ more problems", lines[-1])


def test_huge_budget_is_refused_before_it_can_wrap_the_integer_costs(run_cli):
    result = run_cli("select", "--budget", "energy=1e16", "--budget", "latency=1e16", "-f", "json", "--no-timing")
    assert result.exit_code == 2, result.output
    assert "--budget energy must be at most" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- stats parameter files

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9))


@pytest.mark.parametrize("text, needle", [
    (ALIAS_BOMB, "aliases are not allowed"),
    ("experts: " + "[" * 1000 + "]" * 1000 + "\n", "deeper than 64"),
    ("experts: " + "[" * 5000 + "\n", "deeper than 64"),
    ("top_k: " + "9" * 5000 + "\n", "not a valid int"),
    ("top_k: " + "9" * 400 + "\n", "integer too large"),
])
def test_hostile_parameter_files_fail_fast_and_clean(run_cli, tmp_path, text, needle):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    start = time.perf_counter()
    result = run_cli("stats", "simulate", "--params", path, "-n", "5")
    assert time.perf_counter() - start < 5
    assert needle in one_located_line(result, path)


# ---------------------------------------------------------------- outcome readers


@pytest.mark.parametrize("line, needle", [
    ('{"qid": "q", "category": "math", "scores": {"a": ' + "1" * 5000 + "}}", "invalid JSON"),
    ('{"qid": "q", "category": "math", "scores": {"a": ' + "1" * 400 + "}}", "a number longer than 100 characters"),
    ('{"qid": "q", "category": "math", "scores": {"a": ' + "1" * 40 + "}}", "must be a number in [0, 1]"),
    ('{"qid": "q", "category": "math", "features": [' + "9" * 99 + '], "scores": {"a": 1}}', "finite numbers"),
    ('{"qid": "q", "category": "math", "scores": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid JSON"),
    ('{"qid": "q", "category": "math", "tags": [1], "scores": {"a": 1}}', "tags must be a list"),
])
def test_hostile_jsonl_rows(tmp_path, line, needle):
    path = tmp_path / "o.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InputError) as err:
        read_outcomes(path)
    assert needle in err.value.lines()[0] and err.value.lines()[0].startswith(f"{path}:1: ")


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "o.jsonl.gz"
    packed = gzip.compress(b'{"category": "math", "scores": {"a": 1}}\n' * 100)
    path.write_bytes(packed[:40] + bytes(b ^ 0x5A for b in packed[40:]))
    with pytest.raises(InputError, match="corrupt gzip"):
        read_outcomes(path)


@pytest.mark.parametrize("text, needle", [
    ("qid,category,score:a,score:a\nq,math,1,0\n", "more than once"),
    ('qid,category,score:a\nq,math,"' + "x" * 200_000 + '"\n', "unreadable CSV"),
])
def test_hostile_csv(tmp_path, text, needle):
    path = tmp_path / "o.csv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_outcomes(path)
    assert needle in err.value.lines()[0] and err.value.lines()[0].startswith(str(path))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv.gz"])
def test_tags_travel_through_a_written_table(tmp_path, suffix):
    table = _small_table()
    path = tmp_path / f"o{suffix}"
    write_outcomes(table, path)
    again = read_outcomes(path)
    assert again.tags == table.tags and again.subset([1, 0]).tags == (table.tags[1], table.tags[0])


def test_llmrouter_tasks_become_tags():
    table = read_outcomes(ROOT / "examples" / "data" / "llmrouter-outcomes.jsonl.gz")
    assert table.tags is not None and {t for (t,) in table.tags} >= {"gsm8k", "mbpp"}


def test_lm_eval_float_metric_and_a_single_model(tmp_path):
    import shutil

    from moe2_cli.outcomes import read_lm_eval

    root = tmp_path / "run"
    shutil.copytree(ROOT / "tests" / "fixtures" / "lm_eval" / "good", root)
    shutil.rmtree(root / "meta-llama__Llama-3.1-8B-Instruct")
    for path in root.rglob("*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        path.write_text("".join(json.dumps({**r, "acc": 0.25, "exact_match": 0.75}) + "\n" for r in rows))
    table = read_lm_eval(root)
    assert table.columns == ("qwen2.5-7b-instruct",) and set(np.unique(table.scores)) <= {0.25, 0.75}


def test_pickled_gate_arrays_are_refused(tmp_path):
    import io
    import zipfile

    from moe2_cli.gating.model import load_gate
    from tests.fuzzing import _gate_seeds

    seed = _gate_seeds()[0]
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(seed)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "gate_W.npy":
                buffer = io.BytesIO()
                np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
                data = buffer.getvalue()
            dst.writestr(name, data)
    path = tmp_path / "gate.npz"
    path.write_bytes(out.getvalue())
    with pytest.raises(InputError) as err:
        load_gate(path)
    assert err.value.lines()[0].startswith(str(path))


def test_a_missing_lm_eval_path_is_named(run_cli, tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(DEFAULT + "outcomes: {format: lm-eval, path: no-such-run}\n")
    stderr = one_located_line(run_cli("validate", scenario), scenario)
    assert "no-such-run" in stderr
    missing = tmp_path / "no-such-run"
    result = run_cli("select", "--outcomes", missing)
    assert result.exit_code == 2 and str(missing) in result.stderr, result.output


def test_integer_costs_cannot_wrap():
    from moe2_cli.problem import MAX_ENERGY_J, UNLIMITED, Budgets, Instance

    def instance(energy: float) -> Instance:
        return Instance(name="t", expert_ids=("s/a", "s/b"), expert_llms=("a", "b"), expert_server=np.zeros(2, int),
                        server_names=("s",), transmission_s=np.zeros(1), categories=("c",), shares=np.ones(1),
                        latency_s=np.ones((2, 1)), energy_j=np.full((2, 1), energy), accuracy=np.full((2, 1), 0.5),
                        top_k=2, aggregation_s=0.0)

    worst = instance(MAX_ENERGY_J)
    energy = int(worst.usage([3]).energy[0, 0])
    assert abs(energy - 2 * MAX_ENERGY_J * 1000) <= 2e-9 * 2 * MAX_ENERGY_J * 1000 and energy < UNLIMITED
    for energy in (5.0e15, 1e300, float("inf")):
        with pytest.raises(ValueError, match="energy_j"):
            instance(energy)
    huge = Budgets.build(("c",), energy=1e16, latency=float("inf"))
    assert huge.energy_units[0] == huge.latency_units[0] == UNLIMITED
    assert bool(huge.feasible(worst.usage([3]))[0])


def test_three_questions_are_enough_to_split(run_cli, tmp_path):
    from tests.fuzzing import TINY_SCENARIO, _select_seeds

    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(_select_seeds()[0].decode().split("\n")[:3]) + "\n")
    result = run_cli("select", TINY_SCENARIO, "--outcomes", path, "-f", "json", "--no-timing")
    assert result.exit_code in (0, 1), result.output
    assert json.loads(result.stdout)["status"] in ("optimal", "infeasible")


@pytest.mark.parametrize("damage", [(b"'descr'", b"'descr'("), (b"'shape': (", b"'shape': (((((")])
def test_gate_arrays_with_a_corrupt_header_are_refused(tmp_path, damage):
    import io
    import zipfile

    from moe2_cli.gating.model import load_gate
    from tests.fuzzing import _gate_seeds

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(_gate_seeds()[0])) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data.replace(*damage, 1) if name == "gate_b.npy" else data)
    path = tmp_path / "gate.npz"
    path.write_bytes(out.getvalue())
    with pytest.raises(InputError) as err:
        load_gate(path)
    assert err.value.lines()[0].startswith(f"{path}: not a usable moe2 gate file: gate_b")


def test_lm_eval_rows_whose_metrics_field_is_not_a_list(tmp_path):
    import shutil

    from moe2_cli.outcomes import read_lm_eval

    root = tmp_path / "run"
    shutil.copytree(ROOT / "tests" / "fixtures" / "lm_eval" / "good", root)
    path = sorted(root.rglob("samples_arc_challenge_2024-06-01*.jsonl"))[0]
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    from moe2_cli.outcomes.lm_eval import PREFERRED_METRICS

    rows[0] = {k: v for k, v in rows[0].items() if k not in PREFERRED_METRICS} | {"metrics": 0.5}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError) as err:
        read_lm_eval(root)
    assert err.value.lines()[0].startswith(f"{path}:1: no metric value")


@pytest.mark.parametrize("key, value", [("top_k: 2", "top_k: null"), ("name: edge-testbed", "name: ~"),
                                        ("schema_version: 1", "schema_version: null")])
def test_null_where_a_value_is_required(run_cli, tmp_path, key, value):
    path = tmp_path / "s.yaml"
    path.write_text(DEFAULT.replace(key, value, 1))
    stderr = one_located_line(run_cli("validate", path), path)
    assert "(got null)" in stderr or "(got ~)" in stderr


def test_a_value_with_line_breaks_stays_on_one_diagnostic_line(run_cli, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(DEFAULT.replace("top_k: 2", 'top_k: !!int "\\nline two\\r\\nline three"', 1))
    stderr = one_located_line(run_cli("validate", path), path)
    assert len(stderr.strip().splitlines()) == 1 and "\\nline two" in stderr


def test_a_sequence_used_as_a_top_level_key_is_a_clean_error(tmp_path, run_cli):
    # Found by the profile fuzzer: a flow sequence as a key made validate's kind check fail.
    path = tmp_path / "p.yaml"
    path.write_text("schema_version: 1\n[a, b]: 1\nllms: {}\n")
    result = run_cli("validate", path)
    assert result.exit_code == 2, result.output
    assert str(path) in result.stderr and "internal error" not in result.stderr
