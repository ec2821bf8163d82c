"""The request log (``moe2 serve --log``): one JSON line per request, written off the event loop,
rotated by size; a full queue or a failing disk costs lines, counted in /metrics, never requests."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from moe2_cli.serve.requestlog import LOG_NAME, RequestLog, RotatingFile
from tests.serve.conftest import (
    EXPERTS,
    SERVERS,
    fake_experts,
    plan_for,
    running_proxy,
    write_scenario,
    write_selection,
)

CHAT = "/v1/chat/completions"
FIELDS = {"id", "completion_id", "time", "unix", "endpoint", "stream", "category", "category_source",
          "category_probability", "experts", "answer_from", "status", "latency_s", "upstream_s", "ttft_s", "usage",
          "tokens_spent", "estimated_j", "estimated_j_by_expert", "measured_j", "measured_j_by_expert", "overruns"}


def ask(text: str, **extra) -> dict:
    return {"model": "serve-test", "messages": [{"role": "user", "content": text}], **extra}


def lines(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / LOG_NAME).read_text().splitlines()]


def log_counts(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("moe2_log_lines_total{")}


def every_llm(fail: str) -> dict[str, dict]:
    return {server: {llm: {"fail": fail} for llm in llms} for server, (_, llms) in SERVERS.items()}


def energy_of(plan, experts: list[str], category: str) -> dict[str, float]:
    inst = plan.scenario.instance
    c = inst.categories.index(category)
    return {e: float(inst.energy_j[inst.expert_ids.index(e), c]) for e in experts}


def test_plain_and_streamed_requests_are_logged_with_their_fields(base_plan, tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    with fake_experts() as (_, urls):
        plan = plan_for(base_plan, tmp_path, urls, energy_budget_j=1e-3)
        log = RequestLog(RotatingFile(directory, 1 << 20))
        with running_proxy(plan, request_log=log) as (url, _):
            plain = httpx.post(url + CHAT, headers={"X-Request-Id": "plain-1"},
                               json=ask("poetry sonnet verses", metadata={"category": "mcq"}))
            assert plain.status_code == 200, plain.text
            with httpx.stream("POST", url + CHAT, headers={"X-Request-Id": "stream-1"},
                              json=ask("algebra equation solve", stream=True)) as streamed:
                assert streamed.status_code == 200
                streamed.read()
    whole, stream = lines(directory)
    assert set(whole) == set(stream) == FIELDS, "no text without --log-text"
    body = plain.json()
    assert whole["id"] == "plain-1" and whole["status"] == 200 and not whole["stream"]
    assert whole["completion_id"] == body["id"] != stream["completion_id"]
    assert stream["completion_id"].startswith("chatcmpl-")
    assert whole["category"] == "mcq" and whole["category_source"] == "given"
    assert whole["experts"] == body["moe2"]["experts"] and whole["answer_from"] == body["moe2"]["answer_from"]
    assert whole["usage"] == body["usage"] and whole["tokens_spent"] == body["moe2"]["tokens_spent"]
    assert whole["ttft_s"] is None and whole["measured_j"] is None and whole["latency_s"] > 0
    assert whole["estimated_j_by_expert"] == pytest.approx(energy_of(plan, whole["experts"], "mcq"))
    assert whole["estimated_j"] == pytest.approx(sum(whole["estimated_j_by_expert"].values()))
    assert whole["overruns"] == [{"resource": "energy", "used": round(whole["estimated_j"], 6), "budget": 1e-3}]
    assert whole["time"].endswith("Z") and abs(whole["unix"] - stream["unix"]) < 60
    assert stream["id"] == "stream-1" and stream["stream"] and stream["status"] == 200
    assert stream["category"] == "math" and stream["category_source"] == "inferred"
    assert 0 < stream["category_probability"] <= 1
    assert stream["experts"] == [stream["answer_from"]] == [streamed.headers["x-moe2-experts"]]
    assert 0 < stream["ttft_s"] <= stream["latency_s"]
    assert stream["tokens_spent"]["total_tokens"] == stream["usage"]["total_tokens"] > 0
    assert log.counts() == {(("outcome", "written"),): 2.0, (("outcome", "dropped"),): 0.0}


def test_failed_and_refused_requests_are_logged(base_plan, tmp_path):
    for fail, status in (("500", 502), ("400", 400)):
        directory = tmp_path / fail
        directory.mkdir()
        with fake_experts(every_llm(fail)) as (_, urls), \
                running_proxy(plan_for(base_plan, tmp_path, urls), request_log=RequestLog(RotatingFile(
                    directory, 1 << 20))) as (url, _):
            reply = httpx.post(url + CHAT, json=ask("history empire", metadata={"category": "mcq"}))
        assert reply.status_code == status, reply.text
        (line,) = lines(directory)
        assert set(line) == FIELDS and line["status"] == status and line["answer_from"] is None
        assert line["experts"] and set(line["experts"]) <= set(EXPERTS)
        assert line["usage"] is None and line["estimated_j"] > 0


def test_text_is_logged_only_when_asked(base_plan, tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    with fake_experts() as (_, urls), running_proxy(plan_for(base_plan, tmp_path, urls), request_log=RequestLog(
            RotatingFile(directory, 1 << 20), with_text=True)) as (url, _):
        plain = httpx.post(url + CHAT, json=ask("poetry sonnet", metadata={"category": "mcq"})).json()
        with httpx.stream("POST", url + CHAT, json=ask("chemistry molecule", stream=True,
                                                       metadata={"category": "math"})) as streamed:
            streamed.read()
    whole, stream = lines(directory)
    assert whole["prompt"] == [{"role": "user", "content": "poetry sonnet"}]
    assert whole["answer"] == [plain["choices"][0]["message"]["content"]]
    assert stream["answer"] == [stream["answer_from"].split("/")[1]]  # a fake expert answers with its name


class Gated:
    """A sink whose first write waits until the test opens the gate."""

    def __init__(self):
        self.entered, self.gate, self.closed, self.data = threading.Event(), threading.Event(), threading.Event(), []

    def write(self, data: bytes) -> None:
        self.entered.set()
        self.gate.wait()
        self.data.append(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed.set()


def test_a_full_queue_drops_and_counts_lines():
    sink = Gated()
    log = RequestLog(sink, queue_lines=2)
    log.write({"n": 0})
    assert sink.entered.wait(10)  # the writer holds record 0; the queue is empty
    for n in range(1, 6):
        log.write({"n": n})
    sink.gate.set()
    log.close()
    assert [json.loads(d)["n"] for d in sink.data] == [0, 1, 2]
    assert log.counts() == {(("outcome", "written"),): 3.0, (("outcome", "dropped"),): 3.0}


def test_a_full_queue_costs_no_request(base_plan, tmp_path):
    sink = Gated()
    with fake_experts() as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), request_log=RequestLog(sink, queue_lines=1)) as (url, _):
        replies = [httpx.post(url + CHAT, json=ask("poetry 0", metadata={"category": "mcq"}))]
        assert sink.entered.wait(10)  # the writer holds the first line
        replies += [httpx.post(url + CHAT, json=ask(f"poetry {i}", metadata={"category": "mcq"})) for i in range(3)]
        counts = log_counts(url)
        sink.gate.set()
    assert sink.closed.is_set(), "the server's shutdown closes the log"
    assert [json.loads(d)["status"] for d in sink.data] == [200, 200]
    assert [r.status_code for r in replies] == [200] * 4
    assert counts == {"written": 0, "dropped": 2}  # one line held by the writer, one queued


def test_a_failing_disk_drops_and_counts_lines_and_requests_are_answered(base_plan, tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    (directory / LOG_NAME).symlink_to("/dev/full")  # every flush fails: ENOSPC, even for root
    log = RequestLog(RotatingFile(directory, 1 << 20))
    with fake_experts() as (_, urls), running_proxy(plan_for(base_plan, tmp_path, urls), request_log=log) as (url, _):
        replies = [httpx.post(url + CHAT, json=ask(f"poetry {i}", metadata={"category": "mcq"})) for i in range(3)]
    assert [r.status_code for r in replies] == [200] * 3
    assert log.counts() == {(("outcome", "written"),): 0.0, (("outcome", "dropped"),): 3.0}


def test_the_log_rotates_by_size_and_keeps_five_files(tmp_path):
    log = RequestLog(RotatingFile(tmp_path, max_bytes=200))
    for n in range(100):
        log.write({"n": n, "pad": "x" * 20})
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == [LOG_NAME, *(f"{LOG_NAME}.{i}" for i in range(1, 5))]
    assert all(0 < f.stat().st_size <= 200 for f in files)
    kept = [json.loads(line)["n"] for f in reversed(files) for line in f.read_text().splitlines()]
    assert kept == list(range(100 - len(kept), 100)), "the newest lines, in order, none lost in between"
    assert log.counts() == {(("outcome", "written"),): 100.0, (("outcome", "dropped"),): 0.0}


def test_a_log_directory_that_is_a_file_stops_serve_at_start(run_cli, tmp_path):
    scenario = write_scenario(tmp_path, {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"})
    selection = write_selection(tmp_path, EXPERTS)
    taken = tmp_path / "taken"
    taken.write_text("")
    bad = run_cli("serve", scenario, "--selection", selection, "--port", "0", "--log", taken)
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr == f"moe2: --log {taken}: not a directory\n"
    below = run_cli("serve", scenario, "--selection", selection, "--port", "0", "--log", taken / "sub")
    assert below.exit_code == 2
    assert below.stderr == f"moe2: --log {taken / 'sub'}: cannot write a log there (Not a directory)\n"
    small = run_cli("serve", scenario, "--selection", selection, "--log", tmp_path / "d", "--log-max-mb", "0")
    assert small.exit_code == 2 and small.stderr == "moe2: --log-max-mb must be a finite number > 0 (got 0.0)\n"
