"""Shared test helpers: a CLI runner with a pinned width and no colour, and a private gate cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CLI_ENV = {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("moe2-cache")


@pytest.fixture(autouse=True)
def private_gate_cache(_session_cache, monkeypatch) -> Path:
    """Trained gates are cached in a directory of this test session, never the user's cache."""
    monkeypatch.setenv("MOE2_CACHE_DIR", str(_session_cache))
    return _session_cache


@pytest.fixture
def run_cli():
    """Invoke the moe2 app in-process; returns the click Result (stdout and stderr kept apart)."""
    from moe2_cli.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], env=CLI_ENV)

    return invoke
