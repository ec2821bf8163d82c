"""Every data reader is bounded, streams, and refuses what is not a file: regressions through the
real command line for the hostile inputs of the reliability review, and the caps' settings."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moe2_cli.cli import app
from moe2_cli.errors import InputError, UsageError
from moe2_cli.inputs import Caps, text_lines
from moe2_cli.jsontext import JSONLimitError, loads
from moe2_cli.outcomes import read_outcomes
from moe2_cli.serve.queries import read_queries
from moe2_cli.stats.samples import load_samples
from tests.conftest import CLI_ENV, ROOT
from tests.serve.conftest import EXPERTS, write_scenario, write_selection

URLS = {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"}
ROW = {"qid": "q1", "category": "math", "scores": {"a": 1, "b": 0}}
# A refusal must come in seconds, not after reading gigabytes; this only bounds a hang.
HANG_S = 60


def moe2(*args, env: dict[str, str] | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """The real command line, in its own process."""
    environment = {**os.environ, **CLI_ENV, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "moe2_cli", *map(str, args)], cwd=ROOT, env=environment,
                          input=stdin, capture_output=True, timeout=HANG_S)


def refused(result, *needles: str) -> str:
    """The one-line refusal of a run: exit 2, no traceback, every needle in stderr."""
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    for needle in needles:
        assert needle in stderr, stderr
    return stderr


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as out:
        out.truncate(size)
    return path


# ---------------------------------------------------------------- what is not a regular file


def test_outcomes_from_dev_zero_are_refused_before_reading():
    refused(moe2("select", "--outcomes", "/dev/zero"), "/dev/zero", "character device", "regular file")


def test_a_fifo_is_refused_instead_of_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "outcomes.jsonl"
    os.mkfifo(fifo)
    refused(moe2("select", "--outcomes", fifo), str(fifo), "a FIFO")
    scenario = tmp_path / "scenario.yaml"
    os.mkfifo(scenario)
    refused(moe2("validate", scenario), str(scenario), "a FIFO")


def test_a_two_gigabyte_sparse_file_is_refused_by_its_size(tmp_path):
    path = sparse(tmp_path / "big.jsonl", 2 * 1024**3)
    refused(moe2("select", "--outcomes", path), str(path), "holds more than 268435456 bytes",
            "MOE2_MAX_INPUT_BYTES")


@pytest.mark.parametrize("name", ["samples.csv", "samples.jsonl"])
def test_sample_files_over_the_cap_are_refused_before_reading(tmp_path, name):
    path = sparse(tmp_path / name, 2 * 1024**3)
    refused(moe2("stats", "fit", path), str(path), "holds more than")


def test_query_files_over_the_cap_are_refused_before_reading(tmp_path):
    scenario = write_scenario(tmp_path, URLS)
    path = sparse(tmp_path / "q.jsonl", 2 * 1024**3)
    refused(moe2("route", scenario, "--queries", path), str(path), "holds more than")


def test_a_gzip_is_refused_once_it_inflates_past_the_cap(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(ROW) + "\n").encode() * 200_000))  # 11 MB inflated
    stderr = refused(moe2("select", "--outcomes", path, env={"MOE2_MAX_INPUT_BYTES": str(1 << 20)}),
                     "decompresses to more than 1048576 bytes")
    assert stderr.startswith(f"{path}: ")


def test_standard_input_gets_the_same_caps():
    text = "x1,y\n" + "0.5,1.0\n" * 1000
    refused(moe2("stats", "fit", "-", env={"MOE2_MAX_INPUT_BYTES": "1000"}, stdin=text.encode()),
            "<stdin>: holds more than 1000 bytes")


def test_route_reads_queries_from_standard_input_and_outcomes_refuse_it(tmp_path):
    scenario = write_scenario(tmp_path, URLS)
    selection = write_selection(tmp_path, EXPERTS)
    query = json.dumps({"id": "from-stdin", "category": "math", "text": "x"}) + "\n"
    routed = moe2("route", scenario, "--queries", "-", "--selection", selection, stdin=query.encode())
    assert routed.returncode == 0, routed.stderr
    assert json.loads(routed.stdout)["id"] == "from-stdin"
    refused(moe2("select", "--outcomes", "-", stdin=query.encode()),
            "<stdin>: outcomes cannot come from standard input")


# ---------------------------------------------------------------- the caps


def test_caps_come_from_the_environment():
    caps = Caps.from_environment({"MOE2_MAX_INPUT_BYTES": "1_000", "MOE2_MAX_INPUT_ROWS": "7"})
    assert caps == Caps(bytes=1000, rows=7, record=Caps().record)
    with pytest.raises(UsageError, match="MOE2_MAX_RECORD_BYTES must be a positive whole number"):
        Caps.from_environment({"MOE2_MAX_RECORD_BYTES": "-1"})


def test_a_bad_cap_setting_is_one_line(tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_text(json.dumps(ROW) + "\n")
    result = moe2("select", "--outcomes", path, env={"MOE2_MAX_INPUT_ROWS": "many"})
    assert refused(result) == ("moe2: the environment variable MOE2_MAX_INPUT_ROWS must be a positive whole "
                               "number (got 'many')\n")


def test_the_row_and_line_caps_name_their_setting(tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_text((json.dumps(ROW) + "\n") * 5)
    with pytest.raises(InputError, match=r"o\.jsonl: has more than 4 lines \(set MOE2_MAX_INPUT_ROWS"):
        list(text_lines(path, "outcomes", Caps(rows=4)))
    assert len(list(text_lines(path, "outcomes", Caps(rows=5)))) == 5
    with pytest.raises(InputError, match=r"o\.jsonl:1: the line holds more than 20 bytes \(set MOE2_MAX_RECORD"):
        list(text_lines(path, "outcomes", Caps(record=20)))


@pytest.mark.parametrize("packed", [False, True])
def test_a_long_line_across_read_chunks_is_caught_when_measuring(tmp_path, packed):
    path = tmp_path / "o.jsonl"
    text = (json.dumps(ROW) + "\n" + "x" * (3 << 20) + "\n").encode()
    path.write_bytes(gzip.compress(text) if packed else text)
    with pytest.raises(InputError) as err:
        next(text_lines(path, "outcomes", Caps(record=2 << 20)))  # refused before the first line is given
    assert str(err.value.diagnostics[0]).startswith(f"{path}:2: the line holds more than {2 << 20} bytes")


def test_a_refusal_comes_before_the_file_is_parsed(tmp_path, monkeypatch):
    """Over the row cap, the first row is never parsed: the file is measured first."""
    path = tmp_path / "o.jsonl"
    path.write_text('{"qid": 1}\n' + (json.dumps(ROW) + "\n") * 10)
    monkeypatch.setenv("MOE2_MAX_INPUT_ROWS", "10")
    with pytest.raises(InputError) as err:
        read_outcomes(path)
    assert [str(d) for d in err.value.diagnostics] == [
        f"{path}: has more than 10 lines (set MOE2_MAX_INPUT_ROWS to allow more)"]


def test_lines_keep_their_numbers_across_read_chunks(tmp_path):
    path = tmp_path / "o.jsonl"
    lines = [json.dumps({**ROW, "qid": f"q{i}", "text": "w" * (i % 5000)}) + "\n" for i in range(3000)]
    path.write_text("".join(lines))
    assert [text for _, text in text_lines(path, "outcomes")] == lines
    packed = tmp_path / "o.jsonl.gz"
    packed.write_bytes(gzip.compress("".join(lines).encode()))
    assert [n for n, _ in text_lines(packed, "outcomes")] == list(range(1, 3001))


# ---------------------------------------------------------------- JSON limits


@pytest.mark.parametrize("text, message", [
    ("[" * 65 + "]" * 65, "nesting deeper than 64 levels"),
    ('{"a": ' + "1" * 5000 + "}", "a number longer than 100 characters"),
    ('{"a": 1.' + "5" * 200 + "}", "a number longer than 100 characters"),
])
def test_json_limits(text, message):
    with pytest.raises(JSONLimitError, match=message):
        loads(text)


def test_json_within_the_limits_and_digits_inside_strings_are_fine():
    assert loads("[" * 64 + "]" * 64) is not None
    assert loads(json.dumps({"text": "[" * 500 + "9" * 500})) == {"text": "[" * 500 + "9" * 500}


@pytest.mark.parametrize("content, needle, env", [
    ('{"schema": "moe2.select/1", "selection": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "invalid JSON: nesting deeper than 64 levels", {}),
    ('{"schema": "moe2.select/1", "top_k": ' + "7" * 5000 + "}", "invalid JSON: a number longer than 100", {}),
    ('{"schema": "moe2.select/1", "pad": "' + "x" * 5000 + '"}', "holds more than 4096 bytes",
     {"MOE2_MAX_RECORD_BYTES": "4096"}),
])
def test_route_refuses_hostile_selection_files(tmp_path, content, needle, env):
    scenario = write_scenario(tmp_path, URLS)
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": 1, "category": "math", "text": "x"}) + "\n")
    selection = tmp_path / "select.json"
    selection.write_text(content)
    result = moe2("route", scenario, "--queries", queries, "--selection", selection, env=env)
    assert refused(result, needle).startswith(str(selection))


def test_route_refuses_dev_zero_as_a_selection(tmp_path):
    scenario = write_scenario(tmp_path, URLS)
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": 1, "category": "math", "text": "x"}) + "\n")
    refused(moe2("route", scenario, "--queries", queries, "--selection", "/dev/zero"), "character device")


# ---------------------------------------------------------------- encodings


BOM = b"\xef\xbb\xbf"


def test_a_bom_is_accepted_in_every_jsonl_reader(tmp_path):
    outcomes = tmp_path / "o.jsonl"
    outcomes.write_bytes(BOM + (json.dumps(ROW) + "\n").encode())
    assert read_outcomes(outcomes).qids == ("q1",)
    queries = tmp_path / "q.jsonl"
    queries.write_bytes(BOM + b'{"id": "a", "category": "math", "text": "x"}\n')
    assert [q.id for q in read_queries(queries, ("math",))] == ["a"]
    samples = tmp_path / "s.jsonl"
    samples.write_bytes(BOM + b'{"x": [0.5], "y": 1.0}\n{"x": [0.1], "y": 2.0}\n')
    assert load_samples(samples)[1].tolist() == [1.0, 2.0]


def test_a_bom_in_a_selection_file_is_accepted(run_cli, tmp_path):
    scenario = write_scenario(tmp_path, URLS)
    selection = write_selection(tmp_path, EXPERTS[:2])
    selection.write_bytes(BOM + selection.read_bytes())
    queries = tmp_path / "q.jsonl"
    queries.write_bytes(BOM + json.dumps({"id": 1, "category": "math", "text": "x"}).encode() + b"\n")
    result = run_cli("route", scenario, "--queries", queries, "--selection", selection)
    assert result.exit_code == 0, result.output
    assert {e["expert"] for e in json.loads(result.stdout)["experts"]} <= set(EXPERTS[:2])


def test_gzip_samples_fit_like_plain_ones(run_cli, tmp_path):
    plain = tmp_path / "s.csv"
    assert run_cli("stats", "simulate", "-n", "300", "--out", plain).exit_code == 0
    packed = tmp_path / "s.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    fits = [run_cli("stats", "fit", path, "--format", "json") for path in (plain, packed)]
    assert all(f.exit_code == 0 for f in fits), [f.output for f in fits]
    assert fits[0].stdout == fits[1].stdout


def test_a_gzip_from_standard_input_is_read_too():
    text = "x1,y\n" + "".join(f"{i / 100},{i % 7}\n" for i in range(200))
    runner = CliRunner().invoke(app, ["stats", "fit", "-", "--format", "json"], input=gzip.compress(text.encode()),
                                env=CLI_ENV)
    assert runner.exit_code == 0, runner.output
    assert json.loads(runner.stdout)["n"] == 200


def test_a_decomposed_accent_is_the_same_category(tmp_path):
    outcomes = tmp_path / "o.jsonl"
    rows = [{**ROW, "qid": "q1", "category": "caf\u00e9"}, {**ROW, "qid": "q2", "category": "cafe\u0301"}]
    outcomes.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert read_outcomes(outcomes).categories == ("caf\u00e9",)


def test_prompt_files_take_a_bom_and_gzip_and_refuse_a_fifo(tmp_path):
    from moe2_cli.measure.prompts import load_prompts

    line = json.dumps({"id": "p1", "category": "math", "prompt": "1+1?", "reference": "2", "scorer": "numeric"})
    packed = tmp_path / "prompts.jsonl.gz"
    packed.write_bytes(gzip.compress(BOM + line.encode() + b"\n"))
    assert [p.id for p in load_prompts(packed)] == ["p1"]
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="cannot read prompts: it is a FIFO"):
        load_prompts(fifo)
