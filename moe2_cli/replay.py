"""Replays of repeated `moe2 select` runs: CI scripts ask the same question many times.

A `select` whose answer is proven (status optimal or infeasible) is a pure function of its
command line, the files it reads, moe2's own code and the installed libraries. Its printed
output and exit code are kept under the cache directory, keyed by a hash of the command line,
the working directory, the environment variables that change output, moe2's files (name, size,
modification time) and the directories on ``sys.path`` (an install or upgrade changes them).
Beside the output, an entry lists every input the run looked at: each file read, with a
SHA-256 of its bytes, and each existence probe (a profile's search path), with its answer.
A later identical command checks those inputs and, when every one is unchanged, prints the
kept output byte for byte (its ``wall_s`` included) without importing numpy or the command
line. Anything else runs for real.

Only plain runs are kept: output to a pipe or file (never a terminal, whose width and colours
vary), no ``--no-cache``, ``--help`` or ``--debug``, and no time limit that cut the proof
short. Readers report what they read through :func:`note_read`, :func:`note_probe` and
:func:`note_listing`; each does nothing unless a run is being recorded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

CACHE_ENV = "MOE2_CACHE_DIR"
REPLAYED_COMMANDS = ("select",)
_SKIP_FLAGS = {"--no-cache", "--help", "-h", "--debug", "--install-completion", "--show-completion"}
# Variables that change what a run prints (rich's width and colours) or where it reads from.
_ENV_PREFIXES = ("MOE2_", "COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TERM", "TTY_", "PYTHON")
_LAYOUT = 1  # bump when an entry's fields change
_PACKAGE = Path(__file__).resolve().parent


class _Recording:
    def __init__(self) -> None:
        self.inputs: dict[str, Any] = {}
        self.repeatable = True


_recording: _Recording | None = None


def note_read(path: str | os.PathLike[str], raw: bytes) -> None:
    """A reader read ``raw`` from ``path``."""
    if _recording is not None:
        _recording.inputs[f"file:{os.fspath(path)}"] = hashlib.sha256(raw).hexdigest()


def note_probe(path: str | os.PathLike[str], kind: str, found: bool) -> None:
    """A reader asked whether ``path`` exists as ``kind`` and got ``found``."""
    if _recording is not None:
        _recording.inputs.setdefault(f"probe:{kind}:{os.fspath(path)}", found)


def note_listing(folder: str | os.PathLike[str], pattern: str, names: list[str]) -> None:
    """A reader listed ``folder`` recursively for ``pattern`` and found ``names``."""
    if _recording is not None:
        _recording.inputs[f"listing:{pattern}:{os.fspath(folder)}"] = sorted(names)


def mark_unrepeatable() -> None:
    """This run's answer may differ next time (a time limit cut it short): do not keep it."""
    if _recording is not None:
        _recording.repeatable = False


def cache_root() -> Path:
    """moe2's cache: ``$MOE2_CACHE_DIR``, else the platform's user cache directory."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("moe2", appauthor=False))


def eligible(argv: list[str], stdout: TextIO, stderr: TextIO) -> bool:
    return (bool(argv) and argv[0] in REPLAYED_COMMANDS and not _SKIP_FLAGS.intersection(argv)
            and not _is_terminal(stdout) and not _is_terminal(stderr))


def replay(argv: list[str]) -> int | None:
    """Print the kept output of this exact run and return its exit code, or None on a miss."""
    try:
        entry = json.loads(_entry_path(argv).read_text(encoding="utf-8"))
        if entry.get("layout") != _LAYOUT or not _inputs_unchanged(entry["inputs"]):
            return None
        stdout, stderr, code = entry["stdout"], entry["stderr"], int(entry["exit"])
        if not (isinstance(stdout, str) and isinstance(stderr, str) and code in (0, 1)):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no entry, or a damaged one: run for real
    sys.stdout.write(stdout)
    sys.stdout.flush()
    sys.stderr.write(stderr)
    return code


@contextmanager
def recording(argv: list[str]) -> Iterator[None]:
    """Run the command with its output copied aside; keep it if the run ends with exit 0 or 1."""
    global _recording
    _recording = record = _Recording()
    out, err = io.StringIO(), io.StringIO()
    real_out, real_err = sys.stdout, sys.stderr
    tees = _Tee(real_out, out), _Tee(real_err, err)
    sys.stdout, sys.stderr = tees
    code: Any = 0
    try:
        yield
    except SystemExit as stop:
        code = stop.code
        raise
    finally:
        sys.stdout, sys.stderr = real_out, real_err
        _recording = None
        if code in (0, None, 1) and record.repeatable and not any(tee.broken for tee in tees):
            _store(argv, {"layout": _LAYOUT, "inputs": record.inputs, "stdout": out.getvalue(),
                          "stderr": err.getvalue(), "exit": code or 0})


def clear_replays(root: Path) -> int:
    """Delete every kept answer under ``root``; returns how many there were."""
    removed = 0
    folder = root / "replays"
    if folder.is_dir():
        for path in folder.glob("*.json"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return True  # unknown: treat as a terminal and run for real


def _inputs_unchanged(inputs: dict[str, Any]) -> bool:
    for key, expected in inputs.items():
        kind, _, rest = key.partition(":")
        if kind == "file":
            try:
                raw = Path(rest).read_bytes()
            except OSError:
                return False
            if hashlib.sha256(raw).hexdigest() != expected:
                return False
        elif kind == "probe":
            probe_kind, _, path = rest.partition(":")
            from moe2_cli.fileio import exists_as

            if exists_as(path, probe_kind) != expected:
                return False
        elif kind == "listing":
            pattern, _, folder = rest.partition(":")
            if sorted(str(p) for p in Path(folder).rglob(pattern)) != expected:
                return False
        else:
            return False
    return True


def _key(argv: list[str]) -> str:
    from moe2_cli import __version__

    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES))
    text = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env, "version": __version__,
                       "python": sys.version, "executable": sys.executable, "code": _code_stamp(),
                       "libraries": _path_stamp()})
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _code_stamp() -> list[tuple[str, int, int]]:
    """moe2's own files: an edited checkout is a different program."""
    stamp = []
    for folder, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            st = os.stat(os.path.join(folder, name))
            stamp.append((os.path.relpath(os.path.join(folder, name), _PACKAGE), st.st_size, st.st_mtime_ns))
    return stamp


def _path_stamp() -> list[tuple[str, int]]:
    """Installing, removing or upgrading a library changes its site directory's entries."""
    stamp = []
    here = os.getcwd()
    for entry in sys.path:
        if entry in ("", here):
            continue  # the working directory (`python -m`) changes with every file written there
        try:
            stamp.append((entry, os.stat(entry).st_mtime_ns))
        except OSError:
            continue
    return stamp


def _entry_path(argv: list[str]) -> Path:
    return cache_root() / "replays" / f"{_key(argv)}.json"


def _store(argv: list[str], entry: dict[str, Any]) -> None:
    try:
        path = _entry_path(argv)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    except OSError:
        return  # a cache that cannot be written only costs the next run its speed
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(entry, stream)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)


class _Tee:
    """A text stream that also copies what is written to it into ``copy``."""

    def __init__(self, real: TextIO, copy: io.StringIO):
        self._real, self._copy = real, copy
        self.broken = False

    def write(self, text: str) -> int:
        self._copy.write(text)
        try:
            return self._real.write(text)
        except OSError:
            self.broken = True  # a closed pipe (`| head`): the exit code says nothing about the answer
            raise

    def flush(self) -> None:
        try:
            self._real.flush()
        except OSError:
            self.broken = True
            raise

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)
