"""The proxy holds under load: admission bounds with a 503 and Retry-After past them, probes that
answer while chat is saturated, the drain's cut, refusals the client can read, and bounded
request headers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import httpx

from moe2_cli.serve.admission import Bounds
from tests.serve.conftest import SERVERS, fake_experts, plan_for, running_server

CHAT = "/v1/chat/completions"
ORIN = [f"orin-1/{llm}" for llm in SERVERS["orin-1"][1]]  # every call of a request goes to one fake server
PROBE_LIMIT_S = 0.5  # far above what a probe takes; far below what waiting for chat work would take


def ask(text: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], **extra}


def eventually(condition: Callable[[], bool], limit_s: float = 10) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def metric_values(text: str) -> dict[str, float]:
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))}


@contextmanager
def gated_orin(base_plan, tmp_path, bounds: Bounds, **options):
    """The proxy over orin-1's experts, whose replies wait for ``gate``; yields (url, server,
    orin's fake, gate, a pool to send requests from). The gate opens on the way out."""
    gate = threading.Event()
    held = {"orin-1": {llm: {"gate": gate} for llm in SERVERS["orin-1"][1]}}
    with fake_experts(held) as (servers, urls), ThreadPoolExecutor(16) as pool:
        try:
            with running_server(plan_for(base_plan, tmp_path, urls, ORIN), bounds=bounds, **options) as (url, server):
                yield url, server, servers["orin-1"], gate, pool
        finally:
            gate.set()


def post(pool: ThreadPoolExecutor, url: str, text: str, **extra) -> Future:
    return pool.submit(httpx.post, url + CHAT, json=ask(text, **extra), timeout=30)


def timed_get(url: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    reply = httpx.get(url, timeout=5)
    return reply, time.perf_counter() - started


def test_past_the_bounds_a_503_at_once_while_the_probes_still_answer(base_plan, tmp_path):
    with gated_orin(base_plan, tmp_path, Bounds(max_inflight=3, max_queue=2, queue_timeout_s=30)) as (
            url, server, orin, gate, pool):
        working = [post(pool, url, f"history empire {i}") for i in range(3)]
        assert orin.wait_for_calls(6), "three requests, two experts each, are at the experts"
        queued = [post(pool, url, f"algebra equation {i}") for i in range(2)]
        eventually(lambda: server.admission.queued == 2)
        started = time.perf_counter()
        refused = httpx.post(url + CHAT, json=ask("chemistry molecule"), timeout=5)
        refused_s = time.perf_counter() - started
        content = json.dumps(ask("in one piece")).encode()
        raw = raw_exchange(url, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                b"Content-Length: %d\r\n\r\n%b" % (len(content), content))
        probes = {path: timed_get(url + path) for path in ("/healthz", "/readyz", "/metrics")}
        gate.set()
        answered = [f.result() for f in working + queued]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "server_overloaded" and refused_s < PROBE_LIMIT_S
    head, _, payload = raw.partition(b"\r\n\r\n")  # refused before parsing: the same answer
    assert head.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in head.lower()
    assert json.loads(payload) == refused.json()
    assert [r.status_code for r in answered] == [200] * 5, "the queue is served as slots free up"
    for path, (reply, seconds) in probes.items():
        assert reply.status_code == 200 and seconds < PROBE_LIMIT_S, (path, seconds)
    assert probes["/healthz"][0].json()["status"] == "alive"
    assert probes["/readyz"][0].json()["status"] == "ready"
    values = metric_values(probes["/metrics"][0].text)
    assert values["moe2_admitted_total"] == 3 and values["moe2_admitted_in_flight"] == 3
    assert values["moe2_queued_requests"] == 2
    assert values['moe2_rejected_total{reason="busy"}'] == 2


def test_a_request_waits_in_the_queue_no_longer_than_the_queue_timeout(base_plan, tmp_path):
    with gated_orin(base_plan, tmp_path, Bounds(max_inflight=1, max_queue=4, queue_timeout_s=0.2)) as (
            url, server, orin, gate, pool):
        working = post(pool, url, "history empire")
        assert orin.wait_for_calls(2)
        waited = httpx.post(url + CHAT, json=ask("poetry sonnet"), timeout=5)
        metrics = httpx.get(url + "/metrics").text
        gate.set()
        assert working.result().status_code == 200
    assert waited.status_code == 503 and waited.headers["retry-after"] == "1"
    assert metric_values(metrics)['moe2_rejected_total{reason="queue_timeout"}'] == 1


def test_the_drain_refuses_new_work_fails_readiness_and_answers_what_it_cuts(base_plan, tmp_path):
    hold = threading.Event()
    held = {"orin-1": {llm: {"hold": hold} for llm in SERVERS["orin-1"][1]}}
    gate = threading.Event()
    for llm in held["orin-1"]:
        held["orin-1"][llm]["gate"] = gate
    with fake_experts(held) as (servers, urls), ThreadPoolExecutor(8) as pool:
        try:
            with running_server(plan_for(base_plan, tmp_path, urls, ORIN), grace_s=10) as (url, server):
                whole = [post(pool, url, f"history empire {i}") for i in range(3)]
                assert servers["orin-1"].wait_for_calls(6)
                gate.set()  # streams now start, then hold after their first token
                with httpx.stream("POST", url + CHAT, json=ask("history", stream=True), timeout=30) as stream:
                    lines = stream.iter_lines()
                    first = next(line for line in lines if line.startswith("data: "))
                    server.loop.call_soon_threadsafe(server.admission.drain, 0.3)
                    eventually(lambda: server.admission.draining)
                    readiness = httpx.get(url + "/readyz", timeout=5)
                    late = httpx.post(url + CHAT, json=ask("too late"), timeout=5)
                    rest = list(lines)
                replies = [f.result() for f in whole]
                cut = server.admission.cut_count
        finally:
            hold.set()
            gate.set()
    assert first
    assert readiness.status_code == 503 and "draining" in readiness.json()["reasons"]
    assert late.status_code == 503 and late.json()["error"]["code"] == "server_shutting_down"
    assert late.headers["connection"] == "close" and late.headers["retry-after"] == "1"
    assert [r.status_code for r in replies] == [200] * 3, "whole replies released before the cut finish"
    assert cut == 1, "only the held stream was still running"
    ending = json.loads(next(line for line in rest if line.startswith("data: {\"error\""))[len("data: "):])
    assert ending["error"]["code"] == "server_shutting_down"


def test_an_oversized_body_is_read_so_the_client_sees_413(base_plan, tmp_path):
    with fake_experts() as (_, urls), running_server(plan_for(base_plan, tmp_path, urls), max_body=1 << 20) as (
            url, server), httpx.Client(base_url=url, timeout=30) as client:
        body = json.dumps(ask("x" * (2 << 20))).encode()
        declared = [client.post(CHAT, content=body) for _ in range(5)]
        chunked = [client.post(CHAT, content=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]))
                   for _ in range(5)]
        after = client.post(CHAT, json=ask("history empire"))
    for reply in declared + chunked:
        assert reply.status_code == 413 and reply.json()["error"]["code"] == "request_too_large"
        assert reply.headers.get("connection") != "close", "read to its end: the connection is kept"
    assert after.status_code == 200


def raw_exchange(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_headers_are_bounded_in_size_and_in_time(base_plan, tmp_path):
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    with fake_experts() as (_, urls), running_server(plan_for(base_plan, tmp_path, urls),
                                                     header_timeout_s=0.3) as (url, _):
        at_once = raw_exchange(url, request + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n")
        unfinished = raw_exchange(url, request + b"X-Big: " + b"a" * 20000)  # the parser's buffer overflows
        started = time.monotonic()
        slow = raw_exchange(url, request)  # the headers never end
        silent = raw_exchange(url, b"")
        waited = time.monotonic() - started
        fine = raw_exchange(url, request + b"\r\n")
    assert at_once.startswith(b"HTTP/1.1 431 ") and b"headers_too_large" in at_once
    assert unfinished.startswith(b"HTTP/1.1 400 ")
    assert slow == b"" and silent == b"" and waited < 5, "both connections were closed by the server"
    assert fine.startswith(b"HTTP/1.1 200 ")
