"""The endpoint block of a scenario's server: parsed into one model, every problem at its place."""

from __future__ import annotations

import textwrap

from moe2_cli.scenario import load_scenario

HEAD = """\
schema_version: 1
name: ep
top_k: 1
categories:
  mcq: {share: 1.0}
servers:
"""


def write(tmp_path, servers: str):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(servers), "  "))
    return path


def test_endpoint_fields_are_parsed(tmp_path):
    path = write(tmp_path, """\
        - name: orin
          profile: rtx-4090
          llms: [qwen2.5-7b-instruct, llama-3.1-8b-instruct]
          endpoint:
            url: http://127.0.0.1:8080/
            api_key_env: ORIN_KEY
            models: {qwen2.5-7b-instruct: "qwen2.5:7b"}
            power: nvml:1
            timeout_s: 30
        - name: plain
          profile: rtx-4090
          llms: [qwen2.5-7b-instruct]
        """)
    scenario = load_scenario(path)
    endpoint = scenario.endpoints["orin"]
    assert endpoint.url == "http://127.0.0.1:8080"
    assert endpoint.api_base == "http://127.0.0.1:8080/v1"
    assert endpoint.model_id("qwen2.5-7b-instruct") == "qwen2.5:7b"
    assert endpoint.model_id("llama-3.1-8b-instruct") == "llama-3.1-8b-instruct"
    assert (endpoint.power.kind, endpoint.power.gpu_index) == ("nvml", 1)
    assert endpoint.api_key_env == "ORIN_KEY" and endpoint.timeout_s == 30
    assert endpoint.stream_upstream is False, "whole replies are asked for whole unless the endpoint says so"
    assert "plain" not in scenario.endpoints


def test_stream_upstream_is_a_flag(tmp_path, run_cli):
    path = write(tmp_path, """\
        - name: cpu
          profile: rtx-4090
          llms: [qwen2.5-7b-instruct]
          endpoint: {url: "http://h:1", stream_upstream: true}
        """)
    assert load_scenario(path).endpoints["cpu"].stream_upstream is True
    path.write_text(path.read_text().replace("stream_upstream: true", "stream_upstream: 'yes'"))
    result = run_cli("validate", path)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"{path}:10:52: cpu.endpoint.stream_upstream must be true or false (got 'yes')"


def test_power_none_needs_watts_and_derives(tmp_path):
    path = write(tmp_path, """\
        - name: a
          profile: rtx-4090
          llms: [qwen2.5-7b-instruct]
          endpoint: {url: "http://h:1", power: none, watts: 45}
        """)
    power = load_scenario(path).endpoints["a"].power
    assert power.derived and power.watts == 45


def test_bad_endpoint_reports_each_problem_at_its_place(tmp_path, run_cli):
    path = write(tmp_path, """\
        - name: a
          profile: rtx-4090
          llms: [qwen2.5-7b-instruct]
          endpoint:
            url: ftp://x
            models: {nope: z}
            power: bogus
            api_key_env: "sk-secret 45"
        - name: b
          profile: rtx-4090
          llms: [qwen2.5-7b-instruct]
          endpoint: {url: "http://h:1", power: none}
        """)
    result = run_cli("validate", path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert f"{path}:11:12: a.endpoint.url must be an http:// or https:// URL (got 'ftp://x')" in lines
    assert any(line.startswith(f"{path}:12:") and "'nope'" in line for line in lines)
    assert any(line.startswith(f"{path}:13:") and "power must be one of" in line for line in lines)
    assert any(line.startswith(f"{path}:14:") and "api_key_env" in line for line in lines)
    assert "sk-secret" not in result.stderr
    assert any("b.endpoint needs 'watts'" in line for line in lines)


def test_power_rapl_is_parsed_and_takes_no_argument(tmp_path, run_cli):
    path = write(tmp_path, """\
        - name: cpu
          profile: rtx-4090
          llms: [qwen2.5-7b-instruct]
          endpoint: {url: "http://h:1", power: rapl}
        """)
    power = load_scenario(path).endpoints["cpu"].power
    assert power.kind == "rapl" and not power.derived and power.describe() == "rapl"
    path.write_text(path.read_text().replace("power: rapl", "power: rapl:package-1"))
    result = run_cli("validate", path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"{path}:10:42: cpu.endpoint.power: rapl takes no argument: it reads every "
                                     f"CPU package (got 'rapl:package-1')")
