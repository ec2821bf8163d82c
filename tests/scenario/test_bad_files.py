"""Every bad file gives exit 2, a located one-line diagnostic, and no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moe2_cli.errors import InputError
from moe2_cli.scenario.profiles import load_profile
from moe2_cli.scenario.scenario import load_scenario
from tests.conftest import FIXTURES, ROOT

BAD = sorted((FIXTURES / "bad").glob("*.yaml"))


def _expectation(path: Path) -> tuple[str, str]:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    loc, needle = first.removeprefix("# expect: ").split(" ", 1)
    return loc, needle


def test_corpus_is_large_enough():
    assert len(BAD) >= 25


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_file_is_reported_at_its_place(run_cli, path):
    loc, needle = _expectation(path)
    result = run_cli("validate", path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    wanted = f"{path}:{loc}: "
    lines = result.stderr.splitlines()
    assert any(line.startswith(wanted) and needle in line for line in lines), result.stderr


def test_every_problem_in_a_file_is_listed(run_cli):
    result = run_cli("validate", FIXTURES / "bad" / "p-no-source.yaml")
    assert len(result.stderr.splitlines()) == 3


def test_oversized_file_is_refused(tmp_path, run_cli):
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 1_100_000 + "\n")
    result = run_cli("validate", big)
    assert result.exit_code == 2
    assert "larger than" in result.stderr


def test_missing_file_is_one_line(run_cli, tmp_path):
    result = run_cli("show", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("cannot read file (No such file or directory)")


GOOD_FILES = [FIXTURES / "good" / "scenario.yaml", FIXTURES / "good" / "profiles" / "tiny-device.yaml"]


def _load_any(path: Path):
    text = path.read_text(errors="replace")
    return load_scenario(path) if "servers" in text else load_profile(path)


def _mutate(text: str, data) -> str:
    lines = text.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    action = data.draw(st.sampled_from(["delete", "duplicate", "replace_value", "insert_garbage", "truncate"]))
    if action == "delete":
        del lines[i]
    elif action == "duplicate":
        lines.insert(i, lines[i])
    elif action == "replace_value" and ":" in lines[i]:
        head = lines[i].rsplit(":", 1)[0]
        value = data.draw(st.sampled_from(["-1", ".nan", "0", "[1, 2]", "{a: 1}", "yes", "''", "1e999",
                                           "!!python/object:os.system x", "&x 1", "*x", "\"\\x00\""]))
        lines[i] = f"{head}: {value}"
    elif action == "insert_garbage":
        lines.insert(i, data.draw(st.text(max_size=20)))
    else:
        lines = lines[:i]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), which=st.sampled_from(GOOD_FILES))
def test_fuzzed_good_files_fail_cleanly_or_load(tmp_path_factory, data, which):
    """A mutated file either loads or raises InputError whose lines all carry the file's path."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "profiles").mkdir()
    target = folder / ("profiles/tiny-device.yaml" if which.parent.name == "profiles" else "scenario.yaml")
    if target.name == "scenario.yaml":
        (folder / "profiles" / "tiny-device.yaml").write_text(GOOD_FILES[1].read_text())
    target.write_text(_mutate(which.read_text(), data))
    try:
        _load_any(target)
    except InputError as err:
        assert err.diagnostics
        for line in err.lines():
            assert line.startswith(str(folder)), line
            assert re.match(r".+?(:\d+(:\d+)?)?: \S", line), line


def test_shipped_files_validate(run_cli):
    files = sorted((ROOT / "profiles").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))
    assert files, "no shipped profiles or scenarios"
    result = run_cli("validate", *files, "--format", "json")
    assert result.exit_code == 0, result.output


def test_yaml_loading_is_safe_without_objects():
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("!!python/object/apply:os.system ['true']")
