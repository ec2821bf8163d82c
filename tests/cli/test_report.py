"""`moe2 serve --baseline` as a real process, and `moe2 report LOG` on what it logged: savings,
overhead and the expected accuracy difference; bad logs fail with path:line and exit 2."""

from __future__ import annotations

import json
import signal

import pytest
from openai import OpenAI

from moe2_cli import api
from tests.cli.test_serve import ORIN, _serving
from tests.fakes.openai_server import FakeModel
from tests.serve.conftest import write_scenario, write_selection
from tests.serve.test_categories import metric_values

CATEGORIES = ["mcq", "math", "mcq", "mcq", "math", "mcq"]
KEYS = {"schema", "log", "skipped_lines", "requests", "answered", "baselines", "savings_basis",
        "categories", "overhead_s", "measured_j", "accuracy", "notes"}


def logged(directory) -> list[dict]:
    return [json.loads(line) for line in (directory / "requests.jsonl").read_text().splitlines()]


def record(category: str, status: int = 200, **fields) -> dict:
    """A log line as serve writes it, with the fields the report reads."""
    line = {"id": "r", "category": category, "status": status, "latency_s": 0.5, "upstream_s": 0.4,
            "estimated_j": 30.0, "measured_j": None, "baseline": {"expert": "orin-1/qwen2.5-7b-instruct",
                                                                  "energy_j": 50.0, "latency_s": 2.0},
            "estimated_latency_s": 1.5, "saved_j": 20.0 if status == 200 else None,
            "saved_s": 0.5 if status == 200 else None}
    return {**line, **fields}


def write_log(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_serve_with_a_baseline_logs_and_counts_savings_and_report_sums_them(tmp_path, run_cli):
    directory = tmp_path / "log"
    with _serving(tmp_path, FakeModel(answer="B", delay_s=0.01), ORIN, "--baseline", "best-single",
                  "--log", str(directory)) as (url, proc, _):
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        for i, category in enumerate(CATEGORIES):
            reply = client.chat.completions.create(model="serve-test", metadata={"category": category},
                                                   messages=[{"role": "user", "content": f"history empire {i}"}])
            assert reply.choices[0].message.content == "B"
        metrics = metric_values(url)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.communicate()[1]
    scenario, selection = tmp_path / "scenario.yaml", tmp_path / "select.json"
    lines = logged(directory)
    expert = api.select(scenario)["gain_over_best_single"]["expert"]
    assert {line["baseline"]["expert"] for line in lines} == {expert}, "best-single is the expert select names"
    for category in ("mcq", "math"):
        mine = [line for line in lines if line["category"] == category]
        labels = f'{{category="{category}",baseline="{expert}"}}'
        assert metrics["moe2_saved_energy_joules" + labels] == pytest.approx(sum(x["saved_j"] for x in mine), abs=1e-4)
        assert metrics["moe2_saved_seconds" + labels] == pytest.approx(sum(x["saved_s"] for x in mine), abs=1e-4)

    result = run_cli("report", directory, scenario, "--selection", selection, "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == KEYS and payload["requests"] == payload["answered"] == len(CATEGORIES)
    rows = {row["category"]: row for row in payload["categories"]}
    assert rows["mcq"]["requests"] == CATEGORIES.count("mcq") and rows["math"]["requests"] == CATEGORIES.count("math")
    total = sum(x["saved_j"] for x in lines)
    assert rows["all"]["saved_j"] == pytest.approx(total, abs=1e-5)
    assert rows["all"]["saved_j_per_request"] == pytest.approx(total / len(lines), abs=1e-5)
    assert rows["all"]["saved_s"] == pytest.approx(sum(x["saved_s"] for x in lines), abs=1e-5)
    own = sorted(x["latency_s"] - x["upstream_s"] for x in lines)
    overhead = payload["overhead_s"]
    assert overhead["requests"] == len(lines) and own[0] <= overhead["p50"] <= overhead["p99"] <= own[-1]
    (accuracy,) = payload["accuracy"]
    assert accuracy["baseline"] == expert and accuracy["selection"] == ORIN
    assert accuracy["mix"]["categories"] == pytest.approx({"math": 2 / 6, "mcq": 4 / 6})
    diff, plan, base = accuracy["difference"], accuracy["plan"], accuracy["baseline_f"]
    assert diff["estimate"] == pytest.approx(plan["estimate"] - base["estimate"])
    assert diff["low"] <= diff["estimate"] <= diff["high"] and diff["low"] < diff["high"]
    assert f"reweighted to the mix of the requests in {directory}" in accuracy["covers"]
    assert "not a score of the logged answers" in accuracy["covers"]

    table = run_cli("report", directory, scenario, "--selection", selection)
    assert table.exit_code == 0, table.output
    text = " ".join(table.stdout.split())
    assert f"baseline: {expert} ({len(lines)} requests); savings are profile estimates" in text
    assert f"difference {100 * diff['estimate']:+.2f} pts, interval {100 * diff['low']:+.2f} to" in text
    assert "router overhead (latency minus the time waiting for experts): p50" in text


def test_rotated_files_are_read_oldest_first_and_the_log_alone_gives_no_accuracy(tmp_path, run_cli):
    directory = tmp_path / "log"
    write_log(directory / "requests.jsonl.2", [record("math")])
    write_log(directory / "requests.jsonl.1", [record("mcq"), record("mcq", status=502)])
    write_log(directory / "requests.jsonl", [record("math", measured_j=25.0)])
    result = run_cli("report", directory, "-f", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["log"] == [str(directory / n) for n in ("requests.jsonl.2", "requests.jsonl.1", "requests.jsonl")]
    rows = {row["category"]: row for row in payload["categories"]}
    assert (rows["all"]["requests"], rows["all"]["answered"], rows["all"]["against_baseline"]) == (4, 3, 3)
    assert rows["mcq"]["saved_j"] == 20.0 and rows["all"]["saved_j"] == 60.0 and rows["all"]["saved_s"] == 1.5
    assert payload["measured_j"] == {"requests": 1, "measured_j": 25.0, "estimated_j": 30.0}
    assert payload["accuracy"] == []
    assert any(n.startswith("expected accuracy difference not computed") for n in payload["notes"])
    csv = run_cli("report", directory, "-f", "csv")
    header, *rows = csv.stdout.splitlines()
    assert header.split(",") == list(payload["categories"][0]) and len(rows) == 3


def test_bad_logs_fail_with_their_place_and_exit_2(tmp_path, run_cli):
    missing = run_cli("report", tmp_path / "nowhere")
    assert missing.exit_code == 2 and missing.stderr == f"{tmp_path / 'nowhere'}: no such log file or directory\n"
    (tmp_path / "empty-dir").mkdir()
    nothing = run_cli("report", tmp_path / "empty-dir")
    assert nothing.exit_code == 2 and "no request log here (requests.jsonl" in nothing.stderr
    write_log(tmp_path / "blank.jsonl", [])
    blank = run_cli("report", tmp_path / "blank.jsonl")
    assert blank.exit_code == 2 and blank.stderr == f"{tmp_path / 'blank.jsonl'}: the log holds no request\n"
    bad = tmp_path / "bad.jsonl"
    write_log(bad, [record("mcq"), '{"category": "mcq", "status"', record("mcq", latency_s=-1)])
    strict = run_cli("report", bad)
    assert strict.exit_code == 2 and "Traceback" not in strict.output
    assert strict.stderr.splitlines() == [f"{bad}:2: invalid JSON: Expecting ':' delimiter (column 29)",
                                          f"{bad}:3: latency_s must be a number >= 0 (got -1)"]
    skipped = run_cli("report", bad, "--skip-malformed", "-f", "json")
    assert skipped.exit_code == 0, skipped.output
    payload = json.loads(skipped.stdout)
    assert payload["skipped_lines"] == 2 and payload["requests"] == 1
    assert payload["notes"][0].startswith(f"2 malformed lines skipped (first: {bad}:2: invalid JSON")


def test_a_log_of_another_scenario_and_an_unknown_baseline_are_refused(tmp_path, run_cli):
    scenario = write_scenario(tmp_path, {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"})
    selection = write_selection(tmp_path, ORIN)
    write_log(tmp_path / "other.jsonl", [record("coding")])
    other = run_cli("report", tmp_path / "other.jsonl", scenario, "--selection", selection)
    assert other.exit_code == 2
    assert other.stderr == (f"{tmp_path / 'other.jsonl'}: the log names category 'coding', not one of 'serve-test' "
                            "(mcq, math)\n")
    unknown = run_cli("serve", scenario, "--selection", selection, "--baseline", "orin-1/llama")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("moe2: --baseline must be best-single or an expert of 'serve-test': orin-1/")
    assert "(got 'orin-1/llama')" in unknown.stderr
