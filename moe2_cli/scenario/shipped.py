"""Where the shipped profiles and example scenarios live, installed or in a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


def shipped_dir(name: str) -> Path:
    """``profiles`` or ``examples``: inside the installed package, else at the checkout's top."""
    installed = _PACKAGE / "data" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


def default_scenario() -> Path:
    return shipped_dir("examples") / "default.yaml"
