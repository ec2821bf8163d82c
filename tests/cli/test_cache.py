"""The gate cache through the command line: edited code, a switched profiles folder, damaged
entries and untrusted or unwritable folders each give the true answer or one warning line,
never exit 70; `moe2 cache info` shows where the cache is, its size and its cap."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from moe2_cli.cachedir import MAX_MB_ENV
from tests.conftest import CLI_ENV, ROOT

SMALL = ("--folds", "2", "--format", "json", "--no-timing")
PHI_ON_ORIN = "      mcq: 0.677\n      math: 0.862\n      code: 0.726\n      open_qa: 0.475\n"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A private cache folder of this test alone."""
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("MOE2_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def small_outcomes(tmp_path_factory):
    """300 synthetic queries: enough to train on in a fraction of a second."""
    from moe2_cli.gating.pipeline import scenario_outcomes
    from moe2_cli.outcomes.native import write_outcomes
    from moe2_cli.scenario.scenario import load_scenario

    path = tmp_path_factory.mktemp("outcomes") / "small.jsonl"
    write_outcomes(scenario_outcomes(load_scenario(None), queries=300, seed=1), path)
    return path


def select(run_cli, *args) -> tuple[dict, list[str]]:
    result = run_cli("select", *args, *SMALL)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr.splitlines()


def run_moe2(package_root, cwd, *args) -> dict:
    """``python -m moe2_cli`` importing moe2 from ``package_root`` (run outside it: ``-m`` puts the
    working directory first on the path)."""
    env = {**os.environ, **CLI_ENV, "PYTHONPATH": str(package_root)}
    done = subprocess.run([sys.executable, "-m", "moe2_cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_edited_code_does_not_reuse_what_the_old_code_cached(tmp_path, folder, small_outcomes):
    edited = tmp_path / "edited"
    shutil.copytree(ROOT / "moe2_cli", edited / "moe2_cli", ignore=shutil.ignore_patterns("__pycache__"))
    for shipped in ("profiles", "examples"):
        (edited / shipped).symlink_to(ROOT / shipped)
    model = edited / "moe2_cli" / "gating" / "model.py"
    text = model.read_text(encoding="utf-8")
    assert "_ADAM_BETAS = (0.9, 0.999)" in text
    model.write_text(text.replace("_ADAM_BETAS = (0.9, 0.999)", "_ADAM_BETAS = (0.5, 0.9)"), encoding="utf-8")
    args = ("select", "--outcomes", str(small_outcomes), *SMALL)
    stale = run_moe2(ROOT, tmp_path, *args)["objective"]
    after = run_moe2(edited, tmp_path, *args)["objective"]
    assert after == run_moe2(edited, tmp_path, *args, "--no-cache")["objective"]
    assert after != stale and len(list(folder.glob("*.entry"))) == 2


def test_a_switched_profiles_symlink_gives_the_new_answer(tmp_path, run_cli, folder):
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    shutil.copytree(ROOT / "profiles", v1)
    shutil.copytree(ROOT / "profiles", v2)
    orin = v2 / "jetson-agx-orin-64gb.yaml"
    text = orin.read_text(encoding="utf-8")
    assert text.count(PHI_ON_ORIN) == 1
    orin.write_text(text.replace(PHI_ON_ORIN, PHI_ON_ORIN.replace("0.", "0.0")), encoding="utf-8")  # a tenth
    scenario = tmp_path / "deploy" / "scenario.yaml"
    scenario.parent.mkdir()
    shutil.copyfile(ROOT / "examples" / "default.yaml", scenario)
    link = scenario.parent / "profiles"
    link.symlink_to(v1)
    first, _ = select(run_cli, scenario)
    link.unlink()
    link.symlink_to(v2)
    second, _ = select(run_cli, scenario)
    truth, _ = select(run_cli, scenario, "--no-cache")
    assert second == truth and second["objective"] != first["objective"]


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_entry_gives_the_true_answer_and_one_warning(run_cli, folder, small_outcomes, damage):
    truth, _ = select(run_cli, "--outcomes", small_outcomes, "--no-cache")
    select(run_cli, "--outcomes", small_outcomes)
    [entry] = folder.glob("*.entry")
    entry.write_bytes(entry.read_bytes()[:100] if damage == "truncated" else b"")
    again, stderr = select(run_cli, "--outcomes", small_outcomes)
    assert again == truth
    assert stderr == [line for line in stderr if line.startswith("moe2: warning: the cache entry")] and len(stderr) == 1


def test_an_entry_copied_under_another_name_gives_the_true_answer(run_cli, folder, small_outcomes):
    truth, _ = select(run_cli, "--outcomes", small_outcomes, "--no-cache")
    select(run_cli, "--outcomes", small_outcomes)
    [entry] = folder.glob("*.entry")
    select(run_cli, "--outcomes", small_outcomes, "--top-k", "3")
    [other] = (p for p in folder.glob("*.entry") if p != entry)
    shutil.copyfile(other, entry)
    again, stderr = select(run_cli, "--outcomes", small_outcomes)
    assert again == truth and len(stderr) == 1 and "another key" in stderr[0]


def test_a_world_writable_folder_is_not_used(run_cli, folder, small_outcomes):
    folder.chmod(0o777)
    _, stderr = select(run_cli, "--outcomes", small_outcomes)
    assert stderr == [f"moe2: warning: the cache folder {folder} can be written by other users (mode 777); "
                      "running without the cache"]
    assert not any(folder.iterdir())


def test_a_full_disk_gives_one_warning_and_exit_0(run_cli, folder, small_outcomes, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("moe2_cli.gating.cache.replacing", full)
    truth, _ = select(run_cli, "--outcomes", small_outcomes, "--no-cache")
    again, stderr = select(run_cli, "--outcomes", small_outcomes)
    assert again == truth and len(stderr) == 1 and "cannot be written (No space left" in stderr[0]


def test_cache_info_shows_where_how_much_and_the_cap(run_cli, folder, small_outcomes, monkeypatch):
    monkeypatch.setenv(MAX_MB_ENV, "64")
    select(run_cli, "--outcomes", small_outcomes)
    result = run_cli("cache", "info", "--format", "json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    size = sum(p.stat().st_size for p in folder.glob("*.entry"))
    assert info == {"folder": str(folder), "entries": 1, "bytes": size, "max_bytes": 64 * 2**20, "problem": None}
    table = run_cli("cache", "info")
    assert table.exit_code == 0 and str(folder) in table.stdout and "64" in table.stdout
    assert MAX_MB_ENV in run_cli("cache", "--help").stdout


def test_a_bad_cap_is_one_line_and_exit_2(run_cli, folder, small_outcomes, monkeypatch):
    monkeypatch.setenv(MAX_MB_ENV, "big")
    for result in (run_cli("cache", "info"), run_cli("select", "--outcomes", small_outcomes, *SMALL)):
        assert result.exit_code == 2
        assert result.stderr == f"moe2: {MAX_MB_ENV} must be a number of megabytes >= 0 (got 'big')\n"
