"""The probe listener (``--probe-port``): the main port's probe answers, from a thread of its own,
read safely while the event loop changes what they show, through the drain and until the server
stops."""

from __future__ import annotations

import asyncio
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from moe2_cli.serve.metrics import Metrics
from moe2_cli.serve.server import bind
from tests.serve.conftest import fake_experts, plan_for, running_server

CHAT = "/v1/chat/completions"
QUESTION = {"model": "serve-test", "messages": [{"role": "user", "content": "history empire"}],
            "metadata": {"category": "mcq"}}


@contextmanager
def with_probe_port(base_plan, tmp_path, behaviour=None, **options):
    """(main URL, probe URL, server, fake experts) of a proxy with a probe listener."""
    with fake_experts(behaviour) as (servers, urls), \
            running_server(plan_for(base_plan, tmp_path, urls), probe_sock=bind("127.0.0.1", 0), **options) as (
                url, server):
        yield url, f"http://127.0.0.1:{server.probes.port}", server, servers


def on_loop(server, callback, *args) -> None:
    """Run ``callback`` on the server's event loop and return once it has run."""
    server.loop.call_soon_threadsafe(callback, *args)
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), server.loop).result(timeout=30)  # queued after it


def test_the_probe_port_answers_the_probes_as_the_main_port_does(base_plan, tmp_path):
    with with_probe_port(base_plan, tmp_path) as (url, probes, server, _):
        assert httpx.post(url + CHAT, json=QUESTION).status_code == 200
        for path in ("/healthz", "/readyz"):
            main, probe = httpx.get(url + path), httpx.get(probes + path)
            assert probe.status_code == main.status_code == 200
            assert probe.json() == main.json()
        main, probe = httpx.get(url + "/metrics"), httpx.get(probes + "/metrics")
        assert probe.text == main.text
        assert 'moe2_requests_total{category="mcq",status="200"} 1' in probe.text
        assert "moe2_admitted_total 1" in probe.text
        assert httpx.get(probes + "/v1/models").status_code == 404
        chat = httpx.post(probes + CHAT, json=QUESTION)
        assert chat.status_code == 404 and "not served on the probe port" in chat.json()["error"]["message"]
        wrong_method = httpx.post(probes + "/healthz", json={})
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET"
        assert server.probes.thread.is_alive() and server.probes.thread is not threading.current_thread()


def test_the_probe_port_asks_for_the_key_where_the_main_port_does(base_plan, tmp_path):
    with with_probe_port(base_plan, tmp_path, api_key="s3cret-token") as (_, probes, _, _):
        assert httpx.get(probes + "/metrics").status_code == 401
        assert httpx.get(probes + "/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert httpx.get(probes + "/healthz").status_code == 200
        assert httpx.get(probes + "/readyz").status_code == 200


def test_both_ports_turn_not_ready_together_when_the_drain_starts(base_plan, tmp_path):
    with with_probe_port(base_plan, tmp_path, grace_s=30.0) as (url, probes, server, _):
        assert [httpx.get(u + "/readyz").status_code for u in (url, probes)] == [200, 200]
        on_loop(server, server.admission.drain, 30.0)
        replies = [httpx.get(u + "/readyz") for u in (url, probes)]
        assert [r.status_code for r in replies] == [503, 503]
        assert [r.json()["reasons"] for r in replies] == [["draining"], ["draining"]]
        assert httpx.get(probes + "/healthz").status_code == 200


def test_the_probe_port_answers_through_the_drain_and_stops_with_the_server(base_plan, tmp_path):
    gate = threading.Event()
    held = {"rtx-1": {llm: {"gate": gate} for llm in ("gemma-2-9b-it", "qwen2.5-7b-instruct")},
            "orin-1": {llm: {"gate": gate} for llm in ("qwen2.5-7b-instruct", "phi-3.5-mini-instruct",
                                                       "qwen2.5-1.5b-instruct")}}
    try:
        with with_probe_port(base_plan, tmp_path, held, grace_s=30.0) as (url, probes, server, servers), \
                ThreadPoolExecutor(1) as pool:
            reply = pool.submit(httpx.post, url + CHAT, json=QUESTION, timeout=60)
            assert any(s.wait_for_calls(1, timeout_s=30) for s in servers.values()), "the request is at an expert"
            server.handle_exit(15, None)  # SIGTERM
            on_loop(server, lambda: None)  # the drain, queued by the signal, has started
            ready = httpx.get(probes + "/readyz")
            assert ready.status_code == 503 and ready.json()["reasons"] == ["draining"]
            assert httpx.get(probes + "/healthz").status_code == 200
            gate.set()
            assert reply.result().status_code == 200
            listener = server.probes
    finally:
        gate.set()
    assert not listener.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(probes + "/healthz")


def test_metrics_from_the_probe_thread_while_the_loop_adds_series_never_fail(base_plan, tmp_path):
    stop, series = threading.Event(), 1000

    async def add_series(proxy) -> None:
        for i in range(series):  # bounded: each render reads every series so far
            if stop.is_set():
                return
            proxy.metrics.expert_latency.observe((("expert", f"e{i}"),), 0.01)
            for status in range(5):
                proxy.metrics.requests.inc((("category", f"c{i}"), ("status", str(status))))
            await asyncio.sleep(0)

    with with_probe_port(base_plan, tmp_path) as (_, probes, server, _), httpx.Client(base_url=probes) as client:
        adding = asyncio.run_coroutine_threadsafe(add_series(server.proxy), server.loop)
        try:
            replies = [client.get("/metrics") for _ in range(20)]
        finally:
            stop.set()
            adding.result(timeout=30)
    assert [r.status_code for r in replies] == [200] * 20
    for reply in replies:  # each a whole exposition: every histogram series with its sum and count
        assert reply.text.rstrip().endswith("moe2_admitted_in_flight 0")
        assert reply.text.count("moe2_expert_latency_seconds_sum{") == reply.text.count(
            "moe2_expert_latency_seconds_count{")


def test_a_family_renders_whole_while_another_thread_adds_series():
    metrics = Metrics()

    def add_series() -> None:
        for i in range(5000):
            metrics.latency.observe((("category", f"c{i}"),), 0.01)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the interpreter over often: a race shows within a few renders
    adder = threading.Thread(target=add_series)
    rendered = []
    try:
        adder.start()
        while adder.is_alive():
            rendered.append(metrics.latency.render())
    finally:
        adder.join()
        sys.setswitchinterval(previous)
    rendered.append(metrics.latency.render())
    assert sum("_count{" in line for line in rendered[-1]) == 5000
    for lines in rendered:
        sums = [line for line in lines if "_sum{" in line]
        counts = [line for line in lines if "_count{" in line]
        assert len(sums) == len(counts) == sum('le="+Inf"' in line for line in lines)
        assert all(line.endswith(" 0.01") for line in sums)  # each series' sum is its one observation
