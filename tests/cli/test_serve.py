"""`moe2 serve` as a real process: it answers, and SIGTERM lets every request in flight finish.
Bad setups fail before any training, with one line and exit 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

from moe2_cli.scenario.shipped import default_scenario
from tests.conftest import CLI_ENV, ROOT
from tests.fakes.openai_server import FakeModel, FakeOpenAI
from tests.serve.conftest import EXPERTS, SERVERS, echo_model, write_scenario, write_selection

IN_FLIGHT = 12


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
        time.sleep(0.1)
    raise AssertionError("moe2 serve did not become ready")


def test_sigterm_lets_requests_in_flight_finish(tmp_path):
    slow = {name: {llm: FakeModel(answer=echo_model(llm), delay_s=0.5) for llm in llms}
            for name, (_, llms) in SERVERS.items()}
    with FakeOpenAI(slow["orin-1"]) as orin, FakeOpenAI(slow["rtx-1"]) as rtx:
        scenario = write_scenario(tmp_path, {"orin-1": orin.url, "rtx-1": rtx.url})
        port = _free_port()
        selection = write_selection(tmp_path, EXPERTS)
        command = ["serve", str(scenario), "--selection", str(selection), "--port", str(port)]
        proc = subprocess.Popen([sys.executable, "-m", "moe2_cli", *command],
                                cwd=ROOT, env={**os.environ, **CLI_ENV}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc)
            replies: list[httpx.Response | Exception] = []

            def ask(i: int) -> None:
                try:
                    replies.append(httpx.post(url + "/v1/chat/completions", timeout=20, json={
                        "messages": [{"role": "user", "content": f"history empire {i}"}]}))
                except httpx.HTTPError as err:
                    replies.append(err)

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(IN_FLIGHT)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            while len(orin.calls) + len(rtx.calls) < 2 * IN_FLIGHT and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(orin.calls) + len(rtx.calls) == 2 * IN_FLIGHT, "every request is at its experts"
            proc.send_signal(signal.SIGTERM)
            for thread in threads:
                thread.join(timeout=20)
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        stderr = proc.communicate()[1]
    assert code == 0, stderr
    assert [getattr(r, "status_code", r) for r in replies] == [200] * IN_FLIGHT
    assert all(r.json()["choices"][0]["message"]["content"] for r in replies if isinstance(r, httpx.Response))
    assert "Traceback" not in stderr and f"at http://127.0.0.1:{port}/v1" in stderr


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
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = run_cli("serve", scenario, "--selection", selection, "--port", str(busy.getsockname()[1]))
    assert taken.exit_code == 2 and taken.stderr.startswith("moe2: cannot listen on 127.0.0.1:")


def write_default_selection(directory) -> str:
    path = directory / "default-select.json"
    path.write_text('{"schema": "moe2.select/1", "scenario": "edge-testbed", "top_k": 2, '
                    '"selection": ["orin-1/phi-3.5-mini-instruct"]}')
    return str(path)
