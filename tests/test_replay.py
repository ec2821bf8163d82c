"""Repeated `moe2 select` runs answer from their kept output only while every input is unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from moe2_cli import replay
from tests.conftest import FIXTURES

MARK = "kept output\n"


def moe2(*args, cwd, cache):
    env = {"MOE2_CACHE_DIR": str(cache), "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "moe2_cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def mark_entries(cache) -> int:
    """Replace every kept stdout with MARK, so a replay shows itself."""
    entries = list((cache / "replays").glob("*.json"))
    for path in entries:
        entry = json.loads(path.read_text())
        entry["stdout"] = MARK
        path.write_text(json.dumps(entry))
    return len(entries)


@pytest.fixture
def case(tmp_path):
    shutil.copytree(FIXTURES / "good", tmp_path / "case")
    return tmp_path


def test_a_repeated_select_replays_until_an_input_changes(case):
    cache, args = case / "cache", ("select", "case/scenario.yaml", "--format", "json", "--no-timing")
    first = moe2(*args, cwd=case, cache=cache)
    assert first.returncode == 0, first.stderr
    assert mark_entries(cache) == 1
    again = moe2(*args, cwd=case, cache=cache)
    assert (again.returncode, again.stdout) == (0, MARK)

    other = moe2(*args[:-1], cwd=case, cache=cache)  # another command line is another question
    assert json.loads(other.stdout)["selection"] == json.loads(first.stdout)["selection"]

    scenario = case / "case" / "scenario.yaml"
    scenario.write_text(scenario.read_text() + "# edited\n")
    edited = moe2(*args, cwd=case, cache=cache)
    assert edited.returncode == 0 and edited.stdout == first.stdout


def test_a_profile_that_appears_earlier_on_the_search_path_is_noticed(case):
    cache, args = case / "cache", ("select", "case/scenario.yaml", "--format", "json", "--no-timing")
    first = moe2(*args, cwd=case, cache=cache)
    assert first.returncode == 0 and mark_entries(cache) == 1
    # The scenario's parent's profiles/ is searched before its own: a profile there now wins.
    (case / "profiles").mkdir()
    shutil.copy(case / "case" / "profiles" / "tiny-device.yaml", case / "profiles" / "tiny-device.yaml")
    rerun = moe2(*args, cwd=case, cache=cache)
    assert rerun.returncode == 0 and rerun.stdout != MARK


def test_unmet_budgets_replay_with_their_exit_code_and_message(case):
    cache, args = case / "cache", ("select", "case/scenario.yaml", "--budget", "energy=0.001", "-f", "json")
    first = moe2(*args, cwd=case, cache=cache)
    assert first.returncode == 1 and "no selection meets the budgets" in first.stderr
    again = moe2(*args, cwd=case, cache=cache)
    assert (again.returncode, again.stdout, again.stderr) == (1, first.stdout, first.stderr)


def test_usage_errors_and_no_cache_runs_are_not_kept(case):
    cache = case / "cache"
    assert moe2("select", "case/scenario.yaml", "--top-k", "0", cwd=case, cache=cache).returncode == 2
    assert moe2("select", "case/scenario.yaml", "--no-cache", "-f", "json", cwd=case, cache=cache).returncode == 0
    assert not list((cache / "replays").glob("*.json"))


def test_a_run_cut_by_the_clock_is_not_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE2_CACHE_DIR", str(tmp_path))
    with pytest.raises(SystemExit), replay.recording(["select"]):
        replay.mark_unrepeatable()
        raise SystemExit(0)
    with pytest.raises(SystemExit), replay.recording(["select", "x"]):
        raise SystemExit(0)
    assert len(list((tmp_path / "replays").glob("*.json"))) == 1


def test_only_piped_select_runs_are_eligible():
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    piped, terminal = Stream(False), Stream(True)
    assert replay.eligible(["select", "x.yaml"], piped, piped)
    assert not replay.eligible(["select", "x.yaml"], terminal, piped)
    assert not replay.eligible(["frontier", "x.yaml"], piped, piped)
    assert not replay.eligible(["select", "--help"], piped, piped)
    assert not replay.eligible([], piped, piped)


def test_cache_clear_removes_kept_answers(case):
    cache = case / "cache"
    assert moe2("select", "case/scenario.yaml", "-f", "json", cwd=case, cache=cache).returncode == 0
    cleared = moe2("cache", "clear", cwd=case, cache=cache)
    assert cleared.returncode == 0 and "1 kept select answers" in cleared.stderr
    assert not list((cache / "replays").glob("*.json"))


def test_a_run_whose_output_pipe_closed_is_not_kept(tmp_path, monkeypatch):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError

        def flush(self):
            raise BrokenPipeError

        def isatty(self):
            return False

    monkeypatch.setenv("MOE2_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    with pytest.raises(SystemExit), replay.recording(["select"]):
        try:
            print("a table")
        except BrokenPipeError:
            raise SystemExit(1) from None  # what rich does when its pipe is closed
    assert not list(tmp_path.glob("replays/*.json"))


@pytest.mark.parametrize("damage", [
    "not json", "[]",
    '{"layout": 1, "inputs": [], "stdout": 1, "stderr": "", "exit": 0}',
    '{"layout": 1, "inputs": {}, "stdout": 1, "stderr": "", "exit": 0}',
    '{"layout": 1, "inputs": {}, "stdout": "x", "stderr": "", "exit": 70}',
])
def test_a_damaged_entry_is_a_miss(case, damage):
    cache, args = case / "cache", ("select", "case/scenario.yaml", "--format", "json", "--no-timing")
    first = moe2(*args, cwd=case, cache=cache)
    for path in (cache / "replays").glob("*.json"):
        path.write_text(damage)
    again = moe2(*args, cwd=case, cache=cache)
    assert (again.returncode, again.stdout) == (0, first.stdout) and "Traceback" not in again.stderr
