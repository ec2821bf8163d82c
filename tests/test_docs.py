"""Every command line that README.md and docs/*.md show is run, and what the text says it prints
is checked: the exit code, and every figure, key and word of the shown output (conventions in
tests/doc_blocks.py).

Each page runs in a fresh directory, as a clone of the repository would (``examples``, ``profiles``
and ``tests`` are linked in), with a private cache shared by the pages. ``moe2`` runs this
checkout's code. The fake OpenAI-compatible servers a page starts, and ``moe2 serve``, run on free
loopback ports: the ports the text shows are mapped onto them, in command lines and in the shipped
scenarios that name them. On a mismatch the failure prints the actual output beside the shown
one, ready to paste into the page.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.doc_blocks import Block, Step, read_blocks, shown_matches

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The only blocks not run: what they need is hardware or a network this test cannot stand in for.
NOT_RUN = {"installs moe2 from the network; .ci/run runs the second command verbatim",
           "needs GPU servers running Ollama and llama.cpp",
           "needs real endpoints at the fleet's addresses",
           "needs a fleet of LLM servers to measure, serve and log",
           "needs llama.cpp, vLLM and Ollama servers on Jetson and RTX boards"}
FAKE_SERVER = "python -m tests.fakes.openai_server"
_URL_PORT = re.compile(r"\b(?:127\.0\.0\.1|localhost):(\d+)")
_TIMEOUT_S = 120


def _blocks(page: Path) -> list[Block]:
    return read_blocks(page, ROOT)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("docs-cache")


class Page:
    """One page's shell: a working directory, the environment, and background servers."""

    def __init__(self, cwd: Path, cache: Path):
        self.cwd = cwd
        cwd.mkdir()
        for name in ("examples", "profiles", "tests"):
            (cwd / name).symlink_to(ROOT / name)
        shim = cwd.parent / f"{cwd.name}-bin"
        shim.mkdir()
        (shim / "moe2").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m moe2_cli "$@"\n')
        (shim / "moe2").chmod(0o755)
        self.env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
                    "MOE2_CACHE_DIR": str(cache), "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
        self.env.pop("FORCE_COLOR", None)
        self.ports: dict[str, str] = {}
        self.background: list[subprocess.Popen] = []

    def run(self, step: Step) -> tuple[int, str]:
        """Run one shown command line; returns its exit code and its output."""
        command = self._mapped(step.command)
        if command.startswith(FAKE_SERVER):
            return self._start(command, "--port", "serving ", stdout=True)
        if command.startswith("moe2 serve "):
            code, output = self._start(command, "--port", "moe2 serve: model ", stdout=False)
            return (code, output) if code else self._wait_ready(self.ports["8000" if "--port" not in command
                                                                           else command.split("--port ")[1].split()[0]])
        assert command.split()[0] in ("moe2", "curl") or command.startswith("examples/"), \
            f"{step.where}: the test does not know how to run {step.command!r}; mark the block not run"
        done = subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, capture_output=True,
                              text=True, timeout=_TIMEOUT_S)
        return done.returncode, done.stdout + done.stderr

    def _start(self, command: str, port_option: str, ready: str, *, stdout: bool) -> tuple[int, str]:
        """Start a server in the background on a free port, and wait until it says it listens."""
        words = re.sub(r"\s+#.*$", "", command).rstrip("& ").split()
        shown = "8000"  # moe2 serve's default
        if port_option in words:
            at = words.index(port_option)
            shown = words.pop(at + 1)
            del words[at]
        process = subprocess.Popen(["bash", "-c", " ".join([*words, port_option, "0"])], cwd=self.cwd,
                                   env=self.env, text=True, stdout=subprocess.PIPE if stdout else None,
                                   stderr=None if stdout else subprocess.PIPE, start_new_session=True)
        self.background.append(process)
        stream = process.stdout if stdout else process.stderr
        assert stream is not None
        for line in stream:  # the server says where it listens once its socket is bound
            if line.startswith(ready):
                self.ports[shown] = _URL_PORT.search(line).group(1)  # type: ignore[union-attr]
                return 0, ""
        return process.wait(), "the server stopped before it listened"

    def _wait_ready(self, port: str) -> tuple[int, str]:
        """moe2 serve prints where it listens before its app has started: wait for /healthz."""
        deadline = time.monotonic() + _TIMEOUT_S
        while time.monotonic() < deadline and self.background[-1].poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return 0, ""
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        return 1, "moe2 serve did not become ready"

    def _mapped(self, command: str) -> str:
        """The command with shown ports replaced by the real ones, and shipped scenarios that
        name a shown port replaced by copies naming the real one."""
        command = _URL_PORT.sub(lambda m: m.group(0).replace(m.group(1), self.ports.get(m.group(1), m.group(1))),
                                command)
        return " ".join(self._scenario_copy(word) for word in command.split(" "))

    def _scenario_copy(self, word: str) -> str:
        shipped = ROOT / "examples" / f"{word}.yaml" if "/" not in word else ROOT / word
        if not self.ports or shipped.suffix != ".yaml" or not shipped.is_file():
            return word
        text = shipped.read_text()
        mapped = _URL_PORT.sub(lambda m: m.group(0).replace(m.group(1), self.ports.get(m.group(1), m.group(1))),
                               text)
        if mapped == text:
            return word
        copy = self.cwd / ".ports" / shipped.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_text(mapped)
        return str(copy)

    def stop(self) -> list[str]:
        """Stop the background servers with SIGTERM; returns a problem per server that did not
        exit cleanly (moe2 serve promises exit 0 on SIGTERM)."""
        problems = []
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait()
            if code not in (0, -signal.SIGTERM):
                problems.append(f"{process.args}: exit {code} on SIGTERM")
        return problems


def _steps(page: Path) -> Iterator[Step]:
    for block in _blocks(page):
        if block.not_run is None:
            yield from block.steps


def _check(page: Page, step: Step) -> str | None:
    code, output = page.run(step)
    if code == step.exit_code and (step.shown is None or shown_matches(step.shown, output)):
        return None
    shown = "(output not shown)" if step.shown is None else step.shown
    return (f"{step.where}: $ {step.command}\nexit {code}, shown {step.exit_code}\n"
            f"--- shown\n{shown}\n--- actual\n{output}")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_every_shown_command_prints_what_the_page_says(path, tmp_path, cache_dir):
    page = Page(tmp_path / "cwd", cache_dir)
    failures = []
    try:
        failures = [f for f in (_check(page, step) for step in _steps(path)) if f]
    finally:
        failures += page.stop()
    assert not failures, "\n\n".join(failures)


def test_only_blocks_that_need_hardware_are_not_run():
    reasons = [b.not_run for page in PAGES for b in _blocks(page) if b.not_run]
    assert set(reasons) <= NOT_RUN, set(reasons) - NOT_RUN
    assert len(reasons) == len(NOT_RUN), reasons


def test_the_readme_test_command_is_the_one_ci_runs():
    install = next(b for b in _blocks(ROOT / "README.md") if b.not_run)
    commands = [step.command for step in install.steps]
    assert commands[0].endswith("pip install . && moe2 select")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1].endswith(ci[ci.index("# The README's second command:") + 1])


def test_the_readme_is_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, page.name


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_local_links_lead_to_files(path):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        assert (path.parent / target).exists(), f"{path.name}: {target}"


def test_a_changed_figure_or_missing_line_is_a_mismatch():
    actual = "F = 72.69%   wall: 0.112 s\nnote: one\nnote: two\n"
    assert shown_matches("F = 72.69% wall: […] s\n[…]\nnote: two", actual)
    assert not shown_matches("F = 72.70% wall: […] s\n[…]\nnote: two", actual)
    assert not shown_matches("F = 72.69% wall: […] s\nnote: two", actual)
    assert not shown_matches("F = 72.69% wall: […] s", actual)
