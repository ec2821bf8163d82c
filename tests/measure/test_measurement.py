"""moe2 measure end to end against loopback OpenAI-compatible servers."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml

from moe2_cli.measure import MeasureSettings, Retry, load_prompts, measure
from tests.conftest import ROOT
from tests.fakes.openai_server import FakeModel, FakeOpenAI, unused_url
from tests.measure.helpers import (
    AGX_ORIN,
    PROMPTS,
    fake_pynvml,
    fake_tegrastats,
    models,
    write_prompts,
    write_scenario,
)

DELAY_S = 0.4  # long enough that scheduling noise on a busy machine stays well inside 10 %
FAST_RETRY = Retry(attempts=2, backoff_s=0.01)


def _timing_free(path):
    """A written file without the fields that vary between runs: latency, energy, the date."""
    doc = yaml.safe_load(path.read_text())
    for llm in doc["llms"].values():
        llm.pop("latency_s"), llm.pop("energy_j"), llm.pop("source")
    return doc


def _lines(out):
    return [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]


def _records(out):
    return [line for line in _lines(out) if line["kind"] == "request"]


def test_measure_then_validate_and_select(tmp_path, run_cli):
    served_a, served_b = models(DELAY_S)
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url)
        chosen = [PROMPTS[i] for i in (0, 1, 4, 5)]  # two per category, one of them odd
        prompts = write_prompts(tmp_path / "prompts.jsonl", chosen)
        out = tmp_path / "out"
        result = run_cli("measure", scenario, "--out", out, "--prompts", prompts, "--format", "json",
                         "--warmup", "0")
        assert result.exit_code == 0, result.stderr
        assert len(a.calls) == 2 * len(chosen) and len(b.calls) == len(chosen)
        assert all(call.stream for call in a.calls + b.calls)
    payload = json.loads(result.stdout)
    assert payload["new_requests"] == 3 * len(chosen)
    assert all(row["failures"] == 0 and row["profile"] == "yes" for row in payload["experts"])
    for expert in ("a/qwen2.5-7b-instruct", "a/llama-3.1-8b-instruct", "b/qwen2.5-7b-instruct"):
        p50 = np.median([r["latency_s"] for r in _records(out) if f"{r['server']}/{r['llm']}" == expert])
        assert p50 == pytest.approx(DELAY_S, rel=0.10)
    # Accuracy is exactly the configured correctness: qwen right everywhere, llama on half.
    profile_a = yaml.safe_load((out / "profiles" / "a.yaml").read_text())
    assert profile_a["llms"]["qwen2.5-7b-instruct"]["accuracy"]["mcq"] == 1.0
    assert profile_a["llms"]["llama-3.1-8b-instruct"]["accuracy"]["math"] == 0.5
    source = profile_a["llms"]["llama-3.1-8b-instruct"]["source"]
    assert "measured" in source and "llama-a" in source and "4 prompts" in source and "none: 100 W" in source
    # Each logged score names the text it rests on: a right answer always some, a wrong one maybe none.
    assert all(r["scorer_matched"] for r in _records(out) if r["score"] == 1.0)
    # power: none derives energy as watts x time, request by request.
    for record in _records(out):
        watts = 100 if record["server"] == "a" else 50
        assert record["energy_j"] == pytest.approx(watts * record["latency_s"], rel=1e-9)
    outcomes = [json.loads(line) for line in (out / "outcomes.jsonl").read_text().splitlines()]
    assert [o["qid"] for o in outcomes] == [p["id"] for p in chosen]
    llama = np.mean([o["scores"]["llama-3.1-8b-instruct"] for o in outcomes])
    assert llama == 0.5
    files = [out / "scenario.yaml", *sorted((out / "profiles").glob("*.yaml"))]
    assert run_cli("validate", *files).exit_code == 0
    selected = run_cli("select", out / "scenario.yaml", "--format", "json")
    assert selected.exit_code == 0, selected.stderr
    assert json.loads(selected.stdout)["objective"] == pytest.approx(1.0)


def test_resume_after_a_server_starts_failing_gives_the_same_files(tmp_path):
    served_a, served_b = models(0.01)
    settings = dict(prompts=write_prompts(tmp_path / "prompts.jsonl"), warmup=0, retry=FAST_RETRY)
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url)
        measure(scenario, tmp_path / "whole", MeasureSettings(**settings))
        served_b["qwen-b"].fail = "500"
        broken = measure(scenario, tmp_path / "resumed", MeasureSettings(**settings, max_failure_rate=1.0))
        assert [e.failures for e in broken.experts] == [0, 0, len(PROMPTS)]
        served_b["qwen-b"].fail = None
        resumed = measure(scenario, tmp_path / "resumed", MeasureSettings(**settings, resume=True))
    assert resumed.new_requests == len(PROMPTS)  # only the failed requests were asked again
    for name in ("outcomes.jsonl", "scenario.yaml"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()
    for server in ("a", "b"):
        path = f"profiles/{server}.yaml"
        assert _timing_free(tmp_path / "whole" / path) == _timing_free(tmp_path / "resumed" / path)


def test_preflight_reports_every_endpoint_problem_before_sending(tmp_path, run_cli):
    with FakeOpenAI({"qwen-a": FakeModel()}) as a:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, unused_url(), power_b="{power: file:meter.csv}")
        result = run_cli("measure", scenario, "--out", tmp_path / "out",
                         "--prompts", write_prompts(tmp_path / "p.jsonl"))
        assert a.calls == []
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert "model 'llama-a' (for llama-3.1-8b-instruct) is not served" in lines[0]
    assert "server 'b': cannot reach" in lines[1] and "Traceback" not in result.stderr
    assert "server 'b': power file:" in lines[2] and "no such file" in lines[2]
    assert not (tmp_path / "out").exists()


def test_failures_are_retried_then_counted_and_the_expert_skipped_and_dropped(tmp_path, run_cli):
    served_a, served_b = models(0.0)
    served_a["llama-a"] = FakeModel(fail="hang")
    served_b["qwen-b"].fail = "500"
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url, timeout_s=0.2)
        prompts = write_prompts(tmp_path / "p.jsonl", PROMPTS[:1] + PROMPTS[4:5])
        result = run_cli("measure", scenario, "--out", tmp_path / "out", "--prompts", prompts, "--warmup", "0",
                         "--retries", "1", "--retry-wait", "0.01", "--format", "json")
        # the first prompt is tried twice; past 5 % of two prompts (no failure) the second is not sent
        assert len(b.calls) == 2
    assert result.exit_code == 1, result.stderr
    errors = {(r["server"], r["llm"]): (r["error"], r["reason"]) for r in _records(tmp_path / "out") if not r["ok"]}
    assert errors == {("a", "llama-3.1-8b-instruct"): ("timed out", "timeout"),
                      ("b", "qwen2.5-7b-instruct"): ("HTTP 500", "http")}
    assert "moe2: a/llama-3.1-8b-instruct gets no profile entry: 1 of 2 requests failed (timeout 1), more than " \
           "the allowed failure rate of 5% permits (0)" in result.stderr
    rows = {(row["expert"], row["category"]): row["failed"] for row in json.loads(result.stdout)["experts"]}
    assert rows[("b/qwen2.5-7b-instruct", "mcq")] == "http 1" and rows[("a/qwen2.5-7b-instruct", "mcq")] == ""
    written = yaml.safe_load((tmp_path / "out" / "scenario.yaml").read_text())
    assert [(s["name"], s["llms"]) for s in written["servers"]] == [("a", ["qwen2.5-7b-instruct"])]
    assert list(yaml.safe_load((tmp_path / "out" / "profiles" / "a.yaml").read_text())["llms"]) == \
        ["qwen2.5-7b-instruct"]


def test_an_existing_log_needs_resume(tmp_path, run_cli):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "requests.jsonl").write_text("{}\n")
    scenario = write_scenario(tmp_path / "fleet.yaml", unused_url(), unused_url())
    result = run_cli("measure", scenario, "--out", tmp_path / "out")
    assert result.exit_code == 2 and result.stderr.startswith("moe2: --resume is off, but ")


def test_ctrl_c_leaves_whole_lines_and_resume_finishes(tmp_path):
    served_a, served_b = models(0.05)
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url)
        prompts = write_prompts(tmp_path / "p.jsonl")
        out = tmp_path / "out"
        command = [sys.executable, "-m", "moe2_cli", "measure", str(scenario), "--out", str(out),
                   "--prompts", str(prompts), "--warmup", "0"]
        env = {**os.environ, "NO_COLOR": "1"}
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        log = out / "requests.jsonl"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not log.exists() or log.read_text().count('"kind": "request"') < 3):
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        try:
            _, stderr = child.communicate(timeout=20)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 130, stderr
        assert "--resume" in stderr and "Traceback" not in stderr
        logged = _records(out)
        assert all(line["kind"] in ("power", "request") for line in _lines(out))  # every line is whole JSON
        assert 3 <= len(logged) < 3 * len(PROMPTS)
        assert not (out / "scenario.yaml").exists()
        resumed = measure(scenario, out, MeasureSettings(prompts=prompts, warmup=0, resume=True))
    assert resumed.new_requests == 3 * len(PROMPTS) - len(logged)
    assert len(_records(out)) == 3 * len(PROMPTS)



def test_the_example_fleet_with_tegrastats_and_nvml(tmp_path, monkeypatch, run_cli):
    """examples/measure/fleet.yaml as shipped, its hosts pointed at loopback servers: the Orin's
    power comes from a fake tegrastats replaying a real AGX Orin line, the RTX's from a fake
    pynvml whose counter grows 1 J per reading."""
    fake_tegrastats(tmp_path, monkeypatch, AGX_ORIN)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(itertools.count(0, 1000)))
    orin = {"qwen2.5:7b-instruct-q4_K_M": FakeModel(answer="The answer is A", delay_s=0.05),
            "llama3.1:8b-instruct-q4_K_M": FakeModel(answer="The answer is A", delay_s=0.05)}
    with FakeOpenAI(orin) as a, FakeOpenAI({"qwen2.5-7b-instruct": FakeModel(answer="42", delay_s=0.02)}) as b:
        text = (ROOT / "examples" / "measure" / "fleet.yaml").read_text()
        scenario = tmp_path / "fleet.yaml"
        scenario.write_text(text.replace("http://orin-1.local:11434", a.url).replace("http://rtx-1.local:8080", b.url)
                            .replace("tegrastats_interval_ms: 100", "tegrastats_interval_ms: 10"))
        one_each = {}
        for prompt in load_prompts():
            one_each.setdefault(prompt.category, prompt)
        prompts = tmp_path / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"id": p.id, "category": p.category, "prompt": p.text,
                                               "reference": list(p.references), "scorer": p.scorer}) + "\n"
                                   for p in one_each.values()))
        out = tmp_path / "out"
        result = run_cli("measure", scenario, "--out", out, "--prompts", prompts)
        # One unlogged warm-up request per expert, then every prompt once.
        assert len(a.calls) == 2 * (1 + len(one_each)) and len(b.calls) == 1 + len(one_each)
    assert result.exit_code == 0, result.stderr
    assert len(_records(out)) == 3 * len(one_each)
    for record in _records(out):
        if record["server"] == "rtx-1":
            assert record["energy_j"] == pytest.approx(1.0)
        else:
            assert record["energy_j"] == pytest.approx(23.521 * record["latency_s"], rel=0.02)
    orin_profile = yaml.safe_load((out / "profiles" / "orin-1.yaml").read_text())
    assert "tegrastats --interval 10 (sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO)" in \
        orin_profile["llms"]["qwen2.5-7b-instruct"]["source"]
    rtx_profile = yaml.safe_load((out / "profiles" / "rtx-1.yaml").read_text())
    assert "nvml:0 (NVIDIA GeForce RTX 4090" in rtx_profile["llms"]["qwen2.5-7b-instruct"]["energy_j"]["derived"]
    files = [out / "scenario.yaml", *sorted((out / "profiles").glob("*.yaml"))]
    assert run_cli("validate", *files).exit_code == 0


def test_concurrent_requests_share_the_energy_of_their_overlap(tmp_path):
    served_a, served_b = models(0.05)
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url)
        settings = MeasureSettings(prompts=write_prompts(tmp_path / "p.jsonl"), warmup=0, concurrency=4)
        measure(scenario, tmp_path / "out", settings)
    records = _records(tmp_path / "out")
    for server, watts in (("a", 100), ("b", 50)):
        mine = [r for r in records if r["server"] == server]
        windows = sorted((r["started_at"], r["started_at"] + r["latency_s"]) for r in mine)
        assert any(s2 < e1 for (_, e1), (s2, _) in zip(windows, windows[1:]))  # they did overlap
        covered, reach = 0.0, float("-inf")
        for start, end in windows:
            covered += max(0.0, end - max(start, reach))
            reach = max(reach, end)
        # The shares add up to the time the server was busy, and to the energy it used then.
        assert sum(r["busy_s"] for r in mine) == pytest.approx(covered, rel=1e-6)
        assert sum(r["energy_j"] for r in mine) == pytest.approx(watts * covered, rel=1e-6)


def test_power_meter_log_and_idle_baseline(tmp_path):
    meter = tmp_path / "meter.csv"
    meter.write_text("time,watts\n")
    stop = threading.Event()

    def logger():  # a power meter reading a steady 40 W every 10 ms
        while not stop.is_set():
            with open(meter, "a") as fh:
                fh.write(f"{time.time():.6f},40.0\n")
            time.sleep(0.01)

    thread = threading.Thread(target=logger, daemon=True)
    thread.start()
    served_a, served_b = models(0.05)
    try:
        with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
            scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url, power_a="{power: file:meter.csv}")
            settings = MeasureSettings(prompts=write_prompts(tmp_path / "p.jsonl", PROMPTS[:1] + PROMPTS[4:5]),
                                       warmup=0, idle_baseline_s=0.1)
            result = measure(scenario, tmp_path / "out", settings)
    finally:
        stop.set()
        thread.join()
    assert result.idle_watts["a"] == pytest.approx(40.0)
    assert result.idle_watts["b"] == pytest.approx(50.0)  # power: none is its stated draw
    for record in _records(tmp_path / "out"):
        if record["server"] == "a":
            assert record["energy_j"] == pytest.approx(40.0 * record["latency_s"], rel=1e-6)
    written = yaml.safe_load((tmp_path / "out" / "scenario.yaml").read_text())
    assert written["servers"][0]["endpoint"]["power"] == "file:../meter.csv"
    assert "idle 40.000 W (not subtracted)" in \
        yaml.safe_load((tmp_path / "out" / "profiles" / "a.yaml").read_text())["device"]["notes"]


def test_servers_without_endpoint_or_power_are_named(tmp_path, run_cli):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "schema_version: 1\nname: s\ntop_k: 1\ncategories: {mcq: {share: 1.0}}\nservers:\n"
        "  - {name: bare, profile: rtx-4090, llms: [qwen2.5-7b-instruct]}\n"
        "  - name: nopower\n    profile: rtx-4090\n    llms: [qwen2.5-7b-instruct]\n"
        "    endpoint: {url: 'http://127.0.0.1:9'}\n")
    result = run_cli("measure", scenario, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{scenario}: server 'bare' has no endpoint block: measure needs its URL and power source",
        f"{scenario}: server 'nopower': its endpoint states no power source (power: nvml[:GPU], tegrastats, rapl, "
        f"file:PATH, or none with watts)"]
    assert run_cli("measure", scenario, "--out", tmp_path / "out", "--subtract-idle").exit_code == 2
