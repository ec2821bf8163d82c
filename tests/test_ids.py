"""Names that look alike are refused, naming both; invisible characters are escaped in messages."""

from __future__ import annotations

import json
import shutil

import pytest

from moe2_cli.errors import Diagnostic, InputError, printable
from moe2_cli.ids import lookalike_key, lookalikes
from moe2_cli.outcomes import read_outcomes
from tests.conftest import FIXTURES

SCENARIO = (FIXTURES / "good" / "scenario.yaml").read_text()
PROFILE = (FIXTURES / "good" / "profiles" / "tiny-device.yaml").read_text()


@pytest.mark.parametrize("a, b", [("qwen", "Qwen"), ("qwen", "q\u200bwen"), ("qwen", "\uff51wen"),
                                  ("caf\u00e9", "cafe\u0301"), ("math", "math\u2066"), ("mcq", "mc\ufe0fq")])
def test_lookalikes_share_a_key(a, b):
    assert lookalike_key(a) == lookalike_key(b)
    assert lookalikes([a, "other", b, a]) == [(a, b)]


def test_different_names_do_not_look_alike():
    assert lookalikes(["qwen-7b", "qwen-1.5b", "gemma", "caf\u00e9", "cafe"]) == []


def test_messages_escape_what_does_not_print():
    assert printable("a\u200bb\u202ec\td\x07\n") == "a\\u200bb\\u202ec\\td\\x07\\n"
    assert printable("caf\u00e9 \u4e2d") == "caf\u00e9 \u4e2d"
    assert str(Diagnostic("f", 1, None, "name 'x\u200by'")) == "f:1: name 'x\\u200by'"


def scenario_with(tmp_path, old: str, new: str, profile: str = PROFILE):
    assert old in SCENARIO
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "tiny-device.yaml").write_text(profile)
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace(old, new, 1))
    return path


def one_line(result, path) -> str:
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(str(path)), result.stderr
    return lines[0]


def test_servers_that_differ_by_case_are_refused(run_cli, tmp_path):
    path = scenario_with(tmp_path, "  - name: b\n", "  - name: A\n")
    line = one_line(run_cli("validate", path), path)
    assert line.endswith("server name 'A' looks like 'a': names that differ only in case, Unicode form or "
                         "invisible characters would be two different things")


def test_categories_with_an_invisible_character_are_refused_and_shown_escaped(run_cli, tmp_path):
    path = scenario_with(tmp_path, "  math: {share: 0.4", "  ma\u200bth: {share: 0.0}\n  math: {share: 0.4")
    result = run_cli("validate", path)
    assert result.exit_code == 2 and "\u200b" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:10:3: categories key 'math' looks like 'ma\\u200bth'"), first


def test_profile_llms_that_differ_by_case_are_refused(run_cli, tmp_path):
    path = scenario_with(tmp_path, "name: tiny", "name: tiny",
                         profile=PROFILE.replace("  big-llm:\n", "  Small-LLM:\n"))
    assert "llms key 'Small-LLM' looks like 'small-llm'" in run_cli("validate", path).stderr


def test_lookalike_llms_on_two_profiles_are_refused(run_cli, tmp_path):
    path = scenario_with(tmp_path, "    profile: tiny-device\n    transmission_s: 0.02\n    llms: [big-llm]",
                         "    profile: other\n    transmission_s: 0.02\n    llms: [BIG-llm]")
    shutil.copy(FIXTURES / "good" / "profiles" / "tiny-device.yaml", tmp_path / "profiles" / "other.yaml")
    other = tmp_path / "profiles" / "other.yaml"
    other.write_text(other.read_text().replace("id: tiny-device", "id: other").replace("  big-llm:", "  BIG-llm:"))
    line = one_line(run_cli("validate", path), path)
    assert "LLM 'BIG-llm' looks like 'big-llm'" in line


def test_a_name_spelled_in_another_normal_form_is_the_same_name(run_cli, tmp_path):
    profile = PROFILE.replace("  big-llm:\n", "  caf\u00e9-llm:\n")
    path = scenario_with(tmp_path, "llms: [small-llm, big-llm]", "llms: [small-llm, cafe\u0301-llm]",
                         profile=profile)
    path.write_text(path.read_text().replace("llms: [big-llm]", "llms: [caf\u00e9-llm]"))
    result = run_cli("show", path, "--format", "json")
    assert result.exit_code == 0, result.output
    ids = [e["id"] for e in json.loads(result.stdout)["experts"]]
    assert ids == ["a/small-llm", "a/caf\u00e9-llm", "b/caf\u00e9-llm"]


def test_outcome_columns_and_categories_that_look_alike_are_refused(tmp_path):
    path = tmp_path / "o.jsonl"
    rows = [{"qid": "q1", "category": "math", "scores": {"qwen": 1, "Qwen": 0}},
            {"qid": "q2", "category": "Math", "scores": {"qwen": 1, "Qwen": 0}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError) as err:
        read_outcomes(path)
    messages = [d.message for d in err.value.diagnostics]
    assert any(m.startswith("LLM 'Qwen' looks like 'qwen'") for m in messages), messages
    assert any(m.startswith("category 'Math' looks like 'math'") for m in messages), messages
