"""A small scenario whose servers are loopback fake experts, and the proxy running on loopback.

Outcomes have question text, so the gate's ranking depends on the words of each query: routing
differs from query to query, which is what the route/serve agreement test needs. A topic's
questions share a category (algebra and chemistry are math, history and poetry mcq), so a
category can be inferred from the text.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from moe2_cli.scenario.scenario import load_scenario
from moe2_cli.serve.admission import Bounds, default_max_inflight
from moe2_cli.serve.categories import CategoryPolicy
from moe2_cli.serve.companion import Companion
from moe2_cli.serve.plan import Plan, make_plan, read_selection
from moe2_cli.serve.proxy import Proxy
from moe2_cli.serve.server import HEADER_TIMEOUT_S, Options, bind, build_server
from moe2_cli.serve.upstream import targets_for
from tests.fakes.openai_server import FakeModel, FakeOpenAI, unused_url

# Each LLM is right on the questions of its topic: the text decides the ranking.
TOPICS = {"qwen2.5-7b-instruct": "algebra equation", "phi-3.5-mini-instruct": "history empire",
          "qwen2.5-1.5b-instruct": "chemistry molecule", "gemma-2-9b-it": "poetry sonnet"}
SERVERS = {"orin-1": ("jetson-agx-orin-64gb", ["qwen2.5-7b-instruct", "phi-3.5-mini-instruct",
                                               "qwen2.5-1.5b-instruct"]),
           "rtx-1": ("rtx-4090", ["gemma-2-9b-it", "qwen2.5-7b-instruct"])}
EXPERTS = [f"{server}/{llm}" for server, (_, llms) in SERVERS.items() for llm in llms]


def write_outcomes(path: Path, n: int = 240, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    llms = list(TOPICS)
    with path.open("w") as out:
        for q in range(n):
            topic = llms[q % len(llms)]
            words = rng.choice(["what", "is", "the", "about", "explain", "why", "how", "a"], size=4)
            text = f"{' '.join(words)} {TOPICS[topic]} number {q}"
            scores = {llm: float(llm == topic or rng.random() < 0.2) for llm in llms}
            out.write(json.dumps({"qid": f"t{q}", "category": ["math", "mcq"][q % 2], "text": text,
                                  "scores": scores}) + "\n")


def write_scenario(directory: Path, urls: dict[str, str], *, timeout_s: float = 2.0, key_env: str | None = None,
                   latency_budget_s: float = 20.0, energy_budget_j: float = 5000.0,
                   power: dict[str, dict] | None = None, endpoint_keys: dict | None = None) -> Path:
    """The scenario file, its servers answering at ``urls`` (server name -> base URL); ``power``
    adds a server's power keys to its endpoint (``{"power": "nvml:0"}``), ``endpoint_keys`` more
    keys to every endpoint (``{"stream_upstream": True}``)."""
    write_outcomes(directory / "outcomes.jsonl")
    servers = []
    for name, (profile, llms) in SERVERS.items():
        endpoint = {"url": urls[name], "timeout_s": timeout_s, **({"api_key_env": key_env} if key_env else {}),
                    **(power or {}).get(name, {}), **(endpoint_keys or {})}
        servers.append({"name": name, "profile": profile, "llms": llms, "endpoint": endpoint})
    scenario = {"schema_version": 1, "name": "serve-test", "top_k": 2,
                "categories": {"mcq": {"share": 0.5}, "math": {"share": 0.5}},
                "budgets": {"energy_j": energy_budget_j, "latency_s": latency_budget_s},
                "servers": servers, "outcomes": {"format": "jsonl", "path": "outcomes.jsonl"}}
    path = directory / "scenario.yaml"
    path.write_text(json.dumps(scenario, indent=1))  # JSON is YAML
    return path


def write_selection(directory: Path, experts: list[str], top_k: int = 2) -> Path:
    path = directory / "select.json"
    path.write_text(json.dumps({"schema": "moe2.select/1", "scenario": "serve-test", "selection": experts,
                                "top_k": top_k, "status": "optimal"}))
    return path


def echo_model(llm: str):
    """An expert that answers with its own name, so a reply shows who answered."""
    return lambda prompt: llm


@contextmanager
def fake_experts(behaviour: dict[str, dict] | None = None, down: tuple[str, ...] = (), api_key: str | None = None):
    """One fake server per scenario server, each LLM answering with its name after 10 ms unless
    ``behaviour[server][llm]`` says otherwise; servers in ``down`` refuse connections."""
    behaviour = behaviour or {}
    with ExitStack() as stack:
        servers, urls = {}, {}
        for name, (_, llms) in SERVERS.items():
            if name in down:
                urls[name] = unused_url()
                continue
            models = {llm: FakeModel(**{"answer": echo_model(llm), "delay_s": 0.01,
                                        **behaviour.get(name, {}).get(llm, {})}) for llm in llms}
            servers[name] = stack.enter_context(FakeOpenAI(models, api_key=api_key))
            urls[name] = servers[name].url
        yield servers, urls


@contextmanager
def running_proxy(plan: Plan, *, aggregate: str = "top", fallbacks: int = 2, api_key: str | None = None,
                  max_body: int = 1 << 20, timeout_s: float | None = None, ttft_s: float | None = None, log=None,
                  bounds: Bounds | None = None, grace_s: float = 2.0, header_timeout_s: float = HEADER_TIMEOUT_S,
                  **options):
    """The proxy under uvicorn, as ``moe2 serve`` runs it, on 127.0.0.1 in a thread; yields
    (base URL, proxy). ``options`` go to :class:`Proxy` (the category policy, ``route_on``,
    sessions, deadline, byte cap, breaker, clock)."""
    with running_server(plan, aggregate=aggregate, fallbacks=fallbacks, api_key=api_key, max_body=max_body,
                        timeout_s=timeout_s, ttft_s=ttft_s, log=log, bounds=bounds, grace_s=grace_s,
                        header_timeout_s=header_timeout_s, **options) as (url, server):
        yield url, server.proxy


@contextmanager
def running_server(plan: Plan, *, aggregate: str = "top", fallbacks: int = 2, api_key: str | None = None,
                   max_body: int = 1 << 20, timeout_s: float | None = None, ttft_s: float | None = None, log=None,
                   bounds: Bounds | None = None, grace_s: float = 2.0, header_timeout_s: float = HEADER_TIMEOUT_S,
                   probe_sock=None, attach: Sequence[Callable[[Proxy], Companion]] = (), **options):
    """:func:`running_proxy`, yielding (base URL, server): ``server.admission`` is its admission
    control, ``server.proxy`` the proxy; with ``probe_sock``, ``server.probes`` listens on it;
    each of ``attach`` makes a companion of the proxy."""
    proxy = Proxy(plan=plan, targets=targets_for(plan.scenario, plan.selection, timeout_s), aggregate=aggregate,
                  fallbacks=fallbacks, ttft_s=ttft_s, **({"log": log} if log else {}), **options)
    for make in attach:
        proxy.attach(make(proxy))
    sock = bind("127.0.0.1", 0)
    inflight = default_max_inflight(len(plan.selection), plan.k)
    bounds = bounds or Bounds(max_inflight=inflight, max_queue=inflight)
    server = build_server(proxy, Options(bounds=bounds, grace_s=grace_s, api_key=api_key, max_body=max_body,
                                         header_timeout_s=header_timeout_s), probe_sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "proxy did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def base_plan(tmp_path_factory) -> Plan:
    """The plan over every expert, with its gate (the default router) and its category classifier
    trained once for the whole session."""
    directory = tmp_path_factory.mktemp("serve-base")
    scenario = write_scenario(directory, dict.fromkeys(SERVERS, "http://127.0.0.1:9"))
    return make_plan(scenario, selection=write_selection(directory, EXPERTS), category_policy=CategoryPolicy())


def plan_for(base: Plan, directory: Path, urls: dict[str, str], experts: list[str] | None = None,
             **scenario_options) -> Plan:
    """``base`` with its servers at ``urls`` and its selection ``experts`` (the same gate: the
    outcomes do not change)."""
    scenario = load_scenario(write_scenario(directory, urls, **scenario_options))
    read = read_selection(write_selection(directory, experts or EXPERTS), scenario)
    return replace(base, scenario=scenario, mask=read.mask, k=read.k, budgets=scenario.budgets)
