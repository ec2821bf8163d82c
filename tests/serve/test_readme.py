"""docs/serve.md's walk-through, run in-process: its fake experts, the shipped serve-local
scenario with S solved from its budgets, and its curl request, sent as written; the reply's
``moe2`` field is the one the page shows. (tests/test_docs.py runs the same lines as commands.)"""

from __future__ import annotations

import json
import re
import shlex
from contextlib import ExitStack

import httpx

from moe2_cli.serve.categories import CategoryPolicy
from moe2_cli.serve.plan import make_plan
from tests.conftest import ROOT
from tests.fakes.openai_server import FakeOpenAI, _parse_model
from tests.serve.conftest import running_proxy

SECTION = (ROOT / "docs" / "serve.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, flags=re.S)


def _fake_commands() -> dict[int, list[str]]:
    """Port -> model specs of every fake-server line of the walk-through."""
    out = {}
    for line in _blocks("bash")[0].splitlines():
        words = shlex.split(line.rstrip("&"))
        assert words[:3] == ["python", "-m", "tests.fakes.openai_server"], line
        port = int(words[words.index("--port") + 1])
        out[port] = [words[i + 1] for i, w in enumerate(words) if w == "--model"]
    return out


def _curl() -> tuple[str, dict[str, str], str]:
    """URL, headers and body of the page's curl command."""
    command = next(b for b in _blocks("bash") if b.startswith("curl "))
    words = shlex.split(command.replace("\\\n", " "))
    url = next(w for w in words if w.startswith("http://"))
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    return url, headers, words[words.index("-d") + 1]


def test_the_readme_curl_request_is_answered_as_shown(tmp_path):
    scenario_text = (ROOT / "examples" / "serve-local.yaml").read_text()
    with ExitStack() as stack:
        for port, specs in _fake_commands().items():
            server = stack.enter_context(FakeOpenAI(dict(_parse_model(spec) for spec in specs)))
            assert f"http://127.0.0.1:{port}" in scenario_text
            scenario_text = scenario_text.replace(f"http://127.0.0.1:{port}", server.url)
        scenario = tmp_path / "serve-local.yaml"
        scenario.write_text(scenario_text)
        plan = make_plan(scenario)  # S solved from the scenario's budgets, as `moe2 select` does
        url, headers, body = _curl()
        # serve-local's outcomes are synthesised, without text: the default policy requires a category.
        with running_proxy(plan, category_policy=CategoryPolicy("require")) as (base, _):
            reply = httpx.post(url.replace("http://127.0.0.1:8000", base), headers=headers, content=body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["model"] == json.loads(body)["model"] == plan.scenario.name
    shown = json.loads("{" + _blocks("json")[0] + "}")["moe2"]
    assert set(shown) == set(answer["moe2"])
    for key in ("category", "experts", "answer_from", "aggregate", "failed"):
        assert answer["moe2"][key] == shown[key], key
    assert reply.headers["x-moe2-experts"] == ",".join(shown["experts"])
    assert answer["choices"][0]["message"]["content"] in ("B", "C")
