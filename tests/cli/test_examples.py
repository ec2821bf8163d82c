"""Every shell script in examples/ runs on a clean install, as the README documents it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SCRIPTS = sorted((ROOT / "examples").glob("*.sh"))


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "NO_COLOR": "1"}
    return subprocess.run(["bash", str(ROOT / "examples" / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_script_is_covered():
    assert {p.name for p in SCRIPTS} == {"ci-gate.sh", "frontier.sh"}


def readme_ci_lines() -> list[tuple[list[str], int, str]]:
    """The README's ci-gate example lines, as written: (arguments, exit code, what it prints)."""
    pattern = re.compile(r'^examples/ci-gate\.sh (.*?)\s+# exit (\d): "(.*?)(\.\.\.)?"$', re.M)
    return [(args.split(), int(code), said) for args, code, said, _ in pattern.findall(
        (ROOT / "README.md").read_text())]


def test_ci_gate_passes_and_fails_on_exit_codes(tmp_path):
    ok = run_script("ci-gate.sh", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "PASS" in ok.stdout
    broken = run_script("ci-gate.sh", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert broken.returncode == 2


def test_readme_ci_gate_lines_are_true():
    lines = readme_ci_lines()
    assert [code for _, code, _ in lines] == [0, 1]
    for args, code, said in lines:
        result = run_script("ci-gate.sh", *args, cwd=ROOT)
        assert result.returncode == code, result.stderr
        assert said.rstrip(".") in result.stdout + result.stderr


def test_frontier_script_writes_csv_and_png(tmp_path):
    result = run_script("frontier.sh", str(ROOT / "examples" / "default.yaml"), "out", "energy=100:900:200",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "default-frontier.csv").read_text().startswith("cap.energy,")
    assert (tmp_path / "out" / "default-frontier.png").read_bytes()[:4] == b"\x89PNG"
