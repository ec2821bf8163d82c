"""`moe2 serve` as a real process reads the power sources of the selection's servers: a growing
power-meter log gives each request its measured joules, a source that cannot be read is named
on stderr and served without, and --no-measure-power reads none."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

from moe2_cli.serve.plan import make_plan
from tests.cli.test_serve import _free_port, _wait_ready
from tests.conftest import CLI_ENV, ROOT
from tests.fakes.openai_server import FakeModel, FakeOpenAI
from tests.fakes.power_meter import meter_log
from tests.serve.conftest import SERVERS, write_scenario, write_selection

PAIR = ["orin-1/phi-3.5-mini-instruct", "rtx-1/gemma-2-9b-it"]
METER_W = 40.0
DELAY_S = 0.3


def serve_one_request(tmp_path, *options: str) -> tuple[dict, str]:
    """Serve PAIR (orin-1 on a meter's log, rtx-1 on tegrastats, absent here), send one request,
    stop with SIGTERM; the request's log line and stderr."""
    models = {name: {llm: FakeModel(answer=llm, delay_s=DELAY_S) for llm in llms}
              for name, (_, llms) in SERVERS.items()}
    with FakeOpenAI(models["orin-1"]) as orin, FakeOpenAI(models["rtx-1"]) as rtx:
        power = {"orin-1": {"power": "file:meter.csv"}, "rtx-1": {"power": "tegrastats"}}
        scenario = write_scenario(tmp_path, {"orin-1": orin.url, "rtx-1": rtx.url}, power=power, timeout_s=30)
        selection = write_selection(tmp_path, PAIR)
        make_plan(scenario, selection=selection)  # the gate is cached: the process loads it
        port = _free_port()
        command = ["serve", str(scenario), "--selection", str(selection), "--port", str(port), "--log",
                   str(tmp_path / "log"), *options]
        env = {**os.environ, **CLI_ENV, "PATH": os.path.dirname(sys.executable)}  # no tegrastats on it
        proc = subprocess.Popen([sys.executable, "-m", "moe2_cli", *command], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc)
            reply = httpx.post(url + "/v1/chat/completions", timeout=60,
                               json={"messages": [{"role": "user", "content": "history empire"}]})
            assert reply.status_code == 200, reply.text
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
            stderr = proc.communicate()[1]
        finally:
            if proc.poll() is None:
                proc.kill()
    (line,) = [json.loads(text) for text in (tmp_path / "log" / "requests.jsonl").read_text().splitlines()]
    return line, stderr


def test_serve_measures_the_meter_log_and_names_a_source_it_cannot_read(tmp_path):
    with meter_log(tmp_path / "meter.csv", METER_W):
        line, stderr = serve_one_request(tmp_path)
    assert "moe2 serve: measuring the joules of orin-1's calls with file:meter.csv (power-meter log)" in stderr
    assert ("moe2 serve: warning: server 'rtx-1': power tegrastats: no tegrastats on PATH" in stderr
            and "measured_j null" in stderr), stderr
    orin, rtx = (line["measured_j_by_expert"][e] for e in PAIR)
    # The call's window holds the expert's answer time and lies inside the request's.
    assert METER_W * DELAY_S * 0.95 <= orin <= METER_W * line["latency_s"] * 1.05
    assert rtx is None and line["measured_j"] is None  # a request's joules need every expert's


def test_no_measure_power_reads_no_source(tmp_path):
    with meter_log(tmp_path / "meter.csv", METER_W):
        line, stderr = serve_one_request(tmp_path, "--no-measure-power")
    assert "measuring the joules" not in stderr and "tegrastats" not in stderr
    assert line["measured_j_by_expert"] == dict.fromkeys(PAIR) and line["measured_j"] is None
    assert line["estimated_j"] == pytest.approx(sum(line["estimated_j_by_expert"].values()))
