"""`moe2 stats` commands, invoked in-process."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from moe2_cli.cli.stats import app
from moe2_cli.stats.params_file import load_truth
from moe2_cli.stats.samples import parse_samples

ENV = {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def test_simulate_is_byte_identical_for_a_seed_and_readable():
    first = ok("simulate", "-n", 50, "--seed", 4, "--format", "csv").stdout
    assert first == ok("simulate", "-n", 50, "--seed", 4, "--format", "csv").stdout
    assert first != ok("simulate", "-n", 50, "--seed", 5, "--format", "csv").stdout
    X, Y = parse_samples(first)
    assert X.shape == (50, 1) and Y.shape == (50,)
    lines = ok("simulate", "-n", 5, "--preset", "paper-top1", "--format", "json").stdout.splitlines()
    assert len(lines) == 5 and all(set(json.loads(line)) == {"x", "y"} for line in lines)
    table = ok("simulate", "-n", 3).stdout
    assert "ident-k3K2" in table and "x1" in table


def test_simulate_fit_loss_pipeline(tmp_path):
    samples = tmp_path / "samples.jsonl"
    summary = json.loads(ok("simulate", "-n", 3000, "--seed", 1, "--out", samples, "--format", "json").stdout)
    assert summary["n"] == 3000 and summary["format"] == "jsonl"
    fitted = tmp_path / "fitted.yaml"
    out = json.loads(ok("fit", samples, "--out", fitted, "--format", "json", "--seed", 2).stdout)
    assert out["status"] == "converged" and out["loglik"] >= out["loglik_model"]
    assert out["trace"] == sorted(out["trace"])
    assert load_truth(fitted).params.n_experts == 3
    loss = json.loads(ok("loss", fitted, "--format", "json").stdout)
    assert loss["cells"] == [[1], [2], [3]]
    assert loss["d1"] == pytest.approx(loss["d2"])
    assert 0 < loss["hellinger"] < 0.1 and loss["kbar"] == 2
    table = ok("fit", samples, "--trace").stdout
    assert "log-likelihood trace" in table and "converged" in table


def test_over_specified_fit_has_a_two_atom_cell(tmp_path):
    samples = tmp_path / "samples.csv"
    ok("simulate", "-n", 1500, "--out", samples)
    fitted = tmp_path / "over.yaml"
    out = json.loads(ok("fit", samples, "--spec", "over", "--max-iter", 200, "--out", fitted,
                        "--format", "json").stdout)
    assert len(out["params"]["experts"]) == 4 and out["params"]["top_k"] == 3
    loss = json.loads(ok("loss", fitted, "--format", "json").stdout)
    assert sorted(len(c) for c in loss["cells"]) == [1, 1, 2] and loss["kbar"] == 3
    assert "A_1" in ok("loss", fitted, "--format", "csv").stdout


def test_fit_reads_samples_from_stdin():
    text = ok("simulate", "-n", 400, "--format", "csv").stdout
    result = CliRunner().invoke(app, ["fit", "-", "--format", "json"], input=text, env=ENV)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 400


def test_rates_outputs_agree_and_are_deterministic(tmp_path):
    args = ("rates", "--n-min", 300, "--n-max", 1200, "--points", 3, "--reps", 2, "--boot", 50, "--seed", 1)
    first = ok(*args, "--format", "json")
    assert first.stdout == ok(*args, "--format", "json").stdout
    assert "estimated" in first.stderr
    payload = json.loads(first.stdout)
    assert payload["sizes"] == [300, 600, 1200] and len(payload["replicates"]) == 6
    assert {s["metric"] for s in payload["slopes"]} >= {"hellinger", "d1"}
    csv_lines = ok(*args, "--format", "csv").stdout.splitlines()
    assert csv_lines[0].startswith("n,hellinger,tv,d1") and len(csv_lines) == 4
    median = payload["medians"][0]["hellinger"]
    assert float(csv_lines[1].split(",")[1]) == pytest.approx(median, rel=1e-9)
    table = ok(*args).stdout
    assert "log-log slopes" in table and "theory" in table


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_rates_plot(tmp_path, suffix):
    args = ("rates", "--spec", "over", "--n-min", 300, "--n-max", 600, "--points", 2, "--reps", 1, "--max-iter", 20,
            "--boot", 20, "--plot")
    plot, again = tmp_path / f"rates{suffix}", tmp_path / f"again{suffix}"
    ok(*args, plot)
    assert plot.stat().st_size > 1000
    if suffix == ".svg":  # no date, fixed ids: the same run gives the same file
        ok(*args, again)
        assert plot.read_bytes() == again.read_bytes()


def test_bad_usage_and_input_exit_2_with_one_clear_line(tmp_path):
    result = run("rates", "--plot", tmp_path / "rates.pdf")
    assert result.exit_code == 2 and ".png or .svg" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("top_k: 2\nexperts:\n  - {beta0: 0, beta1: [1], a: [1], b: 0, sigma: 0}\n")
    result = run("simulate", "--params", bad)
    assert result.exit_code == 2 and f"{bad}:3:" in result.stderr and "sigma" in result.stderr
    result = run("simulate", "--params", bad, "--preset", "ident-k3K2")
    assert result.exit_code == 2 and "not both" in result.stderr
    samples = tmp_path / "s.csv"
    samples.write_text("x1,x2,y\n0,0,1\n")
    result = run("fit", samples)
    assert result.exit_code == 2 and "dimension 1" in result.stderr
    result = run("fit", tmp_path / "absent.csv")
    assert result.exit_code == 2 and "cannot read" in result.stderr
    result = run("fit", samples, "--split", 9, "--spec", "over")
    assert result.exit_code == 2 and "--split" in result.stderr
    assert "Traceback" not in result.output


def test_loss_refuses_a_cell_of_four_atoms(tmp_path):
    rows = "\n".join("  - {beta0: -1.386, beta1: [3.0], a: [0.5], b: 0.0, sigma: 0.09}" for _ in range(4))
    four = tmp_path / "four.yaml"
    four.write_text(f"top_k: 2\nexperts:\n{rows}\n  - {{beta0: 0, beta1: [0], a: [1], b: -2, sigma: 0.12}}\n")
    result = run("loss", four)
    assert result.exit_code == 2 and "4 fitted atoms" in result.stderr


def test_simulate_from_a_parameter_file_matches_the_preset(tmp_path):
    params = tmp_path / "model.yaml"
    params.write_text(
        "top_k: 2\nselect_on: score\nx: {dist: uniform, low: -1, high: 1}\nexperts:\n"
        "  - {beta0: 0.5, beta1: [3], a: [0.5], b: 0, sigma: 0.09}\n"
        "  - {beta0: -1, beta1: [6], a: [2], b: 2, sigma: 0.16}\n"
        "  - {beta0: 0, beta1: [0], a: [1], b: -2, sigma: 0.12}\n")
    from_file = ok("simulate", "--params", params, "-n", 20, "--format", "csv").stdout
    assert from_file == ok("simulate", "-n", 20, "--format", "csv").stdout


@pytest.mark.parametrize("command", ["simulate", "fit", "loss", "rates"])
def test_help_teaches_with_an_example(command):
    result = ok(command, "--help")
    assert f"Example: moe2 stats {command}" in result.stdout
    assert "--format" in result.stdout


def test_fit_is_deterministic_for_a_seed(tmp_path):
    samples = tmp_path / "s.csv"
    ok("simulate", "-n", 800, "--out", samples)
    runs = [ok("fit", samples, "--init", "random", "--seed", 3, "--max-iter", 40, "--format", "json").stdout
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert np.isfinite(json.loads(runs[0])["loglik"])


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    result = run("rates", "--reps", 1, "--points", 2, "--plot", tmp_path / "rates.png")
    assert result.exit_code == 2 and "needs matplotlib" in result.stderr
    assert not (tmp_path / "rates.png").exists()
