"""Every shell script in examples/ runs on a clean install (the README's lines are run by tests/test_docs.py)."""

from __future__ import annotations

import os
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


def test_ci_gate_passes_and_fails_on_exit_codes(tmp_path):
    ok = run_script("ci-gate.sh", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "PASS" in ok.stdout
    broken = run_script("ci-gate.sh", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert broken.returncode == 2


def test_frontier_script_writes_csv_and_png(tmp_path):
    result = run_script("frontier.sh", str(ROOT / "examples" / "default.yaml"), "out", "energy=100:900:200",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "default-frontier.csv").read_text().startswith("cap.energy,")
    assert (tmp_path / "out" / "default-frontier.png").read_bytes()[:4] == b"\x89PNG"
