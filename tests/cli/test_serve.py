"""`moe2 serve` as a real process: ready only once warm; SIGTERM stops accepting, lets the
requests in flight finish within the grace and answers the rest with a 503. Bad setups fail
before any training, with one line and exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx

from moe2_cli.scenario.shipped import default_scenario
from moe2_cli.serve.plan import make_plan
from tests.conftest import CLI_ENV, ROOT
from tests.fakes.openai_server import FakeModel, FakeOpenAI
from tests.serve.conftest import SERVERS, write_scenario, write_selection

IN_FLIGHT = 40
ORIN = [f"orin-1/{llm}" for llm in SERVERS["orin-1"][1]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("moe2 serve did not become ready")


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@contextmanager
def _serving(tmp_path, model: FakeModel, experts: list[str], *options: str):
    """``moe2 serve`` as a process over one fake server answering as ``model``; yields (url, process,
    the fake). The process is killed on the way out if it is still running."""
    with FakeOpenAI(dict.fromkeys(SERVERS["orin-1"][1], model)) as orin, FakeOpenAI({}) as rtx:
        scenario = write_scenario(tmp_path, {"orin-1": orin.url, "rtx-1": rtx.url})
        selection = write_selection(tmp_path, experts)
        make_plan(scenario, selection=selection)  # the gate is cached, as after a restart: the process loads it
        port = _free_port()
        command = ["serve", str(scenario), "--selection", str(selection), "--port", str(port), *options]
        proc = subprocess.Popen([sys.executable, "-m", "moe2_cli", *command], cwd=ROOT, env={**os.environ, **CLI_ENV},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc)
            yield url, proc, orin
        finally:
            if proc.poll() is None:
                proc.kill()


def _sigterm_with_requests_held(tmp_path, release: bool, *options: str) -> tuple[list, int, str]:
    """SIGTERM with IN_FLIGHT requests held at the expert; the hold is lifted after the signal
    when ``release``, else only once the process has exited. Returns the replies (or errors),
    the exit status and stderr."""
    gate = threading.Event()
    try:
        with _serving(tmp_path, FakeModel(answer="held", gate=gate), ORIN, "--max-inflight", "64", *options) as (
                url, proc, orin), ThreadPoolExecutor(IN_FLIGHT) as pool:
            def ask(i: int):
                try:
                    return httpx.post(url + "/v1/chat/completions", timeout=60, json={
                        "messages": [{"role": "user", "content": f"history empire {i}"}]})
                except httpx.HTTPError as err:  # a reset or a timeout
                    return err

            replies = [pool.submit(ask, i) for i in range(IN_FLIGHT)]
            assert orin.wait_for_calls(2 * IN_FLIGHT, timeout_s=180), "every request is at its two experts"
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not _refuses_connections(int(url.rsplit(":", 1)[1])):
                assert time.monotonic() < deadline, "the server still accepts connections"
                time.sleep(0.02)
            if release:
                gate.set()
            code = proc.wait(timeout=60)
            stderr = proc.communicate()[1]
            gate.set()
            return [r.result() for r in replies], code, stderr
    finally:
        gate.set()


def test_sigterm_stops_accepting_and_lets_requests_in_flight_finish(tmp_path):
    replies, code, stderr = _sigterm_with_requests_held(tmp_path, True, "--grace", "30")
    assert code == 0, stderr
    assert [getattr(r, "status_code", r) for r in replies] == [200] * IN_FLIGHT
    assert all(r.json()["choices"][0]["message"]["content"] == "held" for r in replies)
    assert "Traceback" not in stderr


def test_the_requests_answered_during_the_drain_are_in_the_log_once_serve_exits(tmp_path):
    directory = tmp_path / "log"  # made by serve
    replies, code, stderr = _sigterm_with_requests_held(tmp_path, True, "--grace", "30", "--log", str(directory))
    assert code == 0, stderr
    records = [json.loads(line) for line in (directory / "requests.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(r.headers["x-request-id"] for r in replies)
    assert {r["status"] for r in records} == {200} and len(records) == IN_FLIGHT


def test_past_the_grace_requests_still_running_get_a_503_and_the_exit_status_says_so(tmp_path):
    replies, code, stderr = _sigterm_with_requests_held(tmp_path, False, "--grace", "1")
    assert code == 75, stderr
    assert [getattr(r, "status_code", r) for r in replies] == [503] * IN_FLIGHT, "answered, never reset"
    assert all(r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "server_shutting_down"
               for r in replies)
    assert stderr.splitlines()[-1] == (f"moe2: {IN_FLIGHT} request(s) still running 1 s after the stop signal "
                                       "were answered with a 503")
    assert "Traceback" not in stderr


def test_the_probe_port_answers_through_the_drain_and_closes_with_the_process(tmp_path):
    gate, probe_port = threading.Event(), _free_port()
    try:
        with _serving(tmp_path, FakeModel(answer="held", gate=gate), ORIN, "--probe-port", str(probe_port)) as (
                url, proc, orin), ThreadPoolExecutor(1) as pool:
            probes = f"http://127.0.0.1:{probe_port}"
            assert httpx.get(probes + "/readyz").status_code == 200
            reply = pool.submit(httpx.post, url + "/v1/chat/completions", timeout=60,
                                json={"messages": [{"role": "user", "content": "history empire"}]})
            assert orin.wait_for_calls(2, timeout_s=180), "the request is at its two experts"
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not _refuses_connections(int(url.rsplit(":", 1)[1])):
                assert time.monotonic() < deadline, "the server still accepts connections"
                time.sleep(0.02)
            ready = httpx.get(probes + "/readyz")
            assert ready.status_code == 503 and ready.json()["reasons"] == ["draining"]
            assert httpx.get(probes + "/healthz").status_code == 200
            gate.set()
            assert reply.result().status_code == 200
            code, stderr = proc.wait(timeout=60), proc.communicate()[1]
    finally:
        gate.set()
    assert code == 0, stderr
    assert f"moe2 serve: probes also at http://127.0.0.1:{probe_port} (/healthz, /readyz, /metrics)" in stderr
    assert _refuses_connections(probe_port)


def test_the_first_request_after_start_is_as_fast_as_the_next(tmp_path):
    """Everything the first request would load (the router's imports, the clients) is loaded
    before the server reports ready."""
    with _serving(tmp_path, FakeModel(answer="B", delay_s=0.05), ORIN) as (url, _, _), \
            httpx.Client(base_url=url, timeout=30) as client:
        seconds = []
        for i in range(10):
            started = time.perf_counter()
            reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": f"q {i}"}]})
            seconds.append(time.perf_counter() - started)
            assert reply.status_code == 200, reply.text
    steady = sorted(seconds[1:])[len(seconds[1:]) // 2]
    assert seconds[0] < 2 * steady, seconds


def test_setup_errors_exit_2_before_training(run_cli, tmp_path, monkeypatch):
    scenario = write_scenario(tmp_path, {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"},
                              key_env="MOE2_TEST_UNSET_KEY")
    selection = write_selection(tmp_path, ["orin-1/phi-3.5-mini-instruct"])
    monkeypatch.delenv("MOE2_TEST_UNSET_KEY", raising=False)
    missing_key = run_cli("serve", scenario, "--selection", selection)
    assert missing_key.exit_code == 2
    assert missing_key.stderr == (f"{scenario}: orin-1.endpoint.api_key_env names MOE2_TEST_UNSET_KEY, "
                                  "which is not set\n")
    no_endpoint = run_cli("serve", "--selection", write_default_selection(tmp_path))
    assert no_endpoint.exit_code == 2
    assert no_endpoint.stderr.startswith(f"{default_scenario()}: server 'orin-1' has no endpoint block")
    assert run_cli("serve", scenario, "--selection", selection, "--api-key-env", "MOE2_TEST_UNSET_KEY",
                   ).stderr == "moe2: --api-key-env names MOE2_TEST_UNSET_KEY, which is not set (or empty)\n"
    assert run_cli("serve", scenario, "--aggregate", "mean").exit_code == 2
    for flag in ("--timeout", "--ttft-timeout", "--queue-timeout", "--grace"):
        for value, shown in (("inf", "inf"), ("nan", "nan"), ("0", "0.0"), ("-1", "-1.0")):
            bad = run_cli("serve", scenario, "--selection", selection, flag, value)
            assert bad.exit_code == 2, (flag, value, bad.stderr)
            assert bad.stderr == f"moe2: {flag} must be a finite number of seconds > 0 (got {shown})\n"
    monkeypatch.setenv("MOE2_TEST_UNSET_KEY", "k")
    for spec, needle in (("math=lots", "must look like math=512 or 256"),
                         ("poetry=5", "names unknown category 'poetry'")):
        capped = run_cli("serve", scenario, "--selection", selection, "--max-tokens", spec)
        assert capped.exit_code == 2 and capped.stderr.startswith(f"moe2: --max-tokens {needle}"), capped.stderr
        assert len(capped.stderr.splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = run_cli("serve", scenario, "--selection", selection, "--port", str(busy.getsockname()[1]))
        probe_taken = run_cli("serve", scenario, "--selection", selection, "--port", "0", "--probe-port",
                              str(busy.getsockname()[1]))
    assert taken.exit_code == 2 and taken.stderr.startswith("moe2: cannot listen on 127.0.0.1:")
    assert probe_taken.exit_code == 2 and probe_taken.stderr.startswith("moe2: --probe-port: cannot listen on ")
    same = run_cli("serve", scenario, "--selection", selection, "--port", "8123", "--probe-port", "8123")
    assert same.exit_code == 2
    assert same.stderr == "moe2: --probe-port 8123 is the --port too; give the probes a port of their own\n"


def write_default_selection(directory) -> str:
    path = directory / "default-select.json"
    path.write_text('{"schema": "moe2.select/1", "scenario": "edge-testbed", "top_k": 2, '
                    '"selection": ["orin-1/phi-3.5-mini-instruct"]}')
    return str(path)
