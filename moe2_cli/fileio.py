"""Output files that appear whole or not at all, and the checks that say early when they cannot.

:func:`atomic_output` writes into a temporary file beside the target and renames it over the
target only when the writer finished: a full disk, an exception or Ctrl-C midway leaves the old
file, or none, and never a partial one; what a killed writer left behind is removed by the next
write to that folder, an hour later. :func:`check_writable` refuses an output path before
any long computation starts. :func:`exists_as` asks about a path without raising on names the
operating system refuses.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from moe2_cli.errors import UsageError

_TEMP_PREFIX = ".moe2-"
_TEMP_SUFFIX = ".tmp"
# Exactly what mkstemp makes of the prefix and suffix: eight characters of its alphabet between.
_TEMP_NAME = re.compile(r"\.moe2-[a-z0-9_]{8}\.tmp")
STALE_AFTER_S = 3600  # a write taking longer than this is not one moe2 does


def exists_as(path: str | Path, kind: str = "any") -> bool:
    """Whether ``path`` is a file (``kind="file"``), a directory (``"dir"``) or either; a name
    too long or otherwise invalid for the operating system is simply not there."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    if kind == "file":
        return stat.S_ISREG(mode)
    if kind == "dir":
        return stat.S_ISDIR(mode)
    return True


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def check_writable(path: str | Path, option: str) -> None:
    """Raise UsageError (one line about the parameter ``option`` and the path) unless a file can be
    written at ``path``: its parent is an existing writable directory, the path is not a directory and
    its name is not too long. Nothing is created."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    problem = None
    if not path.name or exists_as(path, "dir"):
        problem = "is a directory"
    elif not exists_as(parent, "dir"):
        problem = "is in a directory that does not exist" if not exists_as(parent) else "has a parent that is a file"
    elif len(os.fsencode(path.name)) > _name_max(parent):
        problem = f"has a file name longer than {_name_max(parent)} bytes"
    elif not os.access(parent, os.W_OK | os.X_OK) or (exists_as(path) and not os.access(path, os.W_OK)):
        problem = "cannot be written (permission denied)"
    if problem:
        shown = str(path) if len(str(path)) <= 200 else str(path)[:197] + "..."
        raise UsageError(f"{shown} {problem}", option)


@contextlib.contextmanager
def atomic_output(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A stream (text for ``mode="w"``, binary for ``"wb"``) whose content replaces ``path`` only
    when the ``with`` block ends normally; on any exception, KeyboardInterrupt included, the
    temporary file is removed and ``path`` is left as it was. OSError becomes UsageError."""
    try:
        with replacing(path, mode) as stream:
            yield stream
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from None


@contextlib.contextmanager
def replacing(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """:func:`atomic_output` for callers that handle OSError themselves (a cache that cannot be
    written is not the user's mistake). Temporary files are named ``.moe2-*.tmp``."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    remove_leftovers(directory)
    fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=directory)
    try:
        text = "b" not in mode
        with open(fd, mode, encoding="utf-8" if text else None, newline="" if text else None) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is named ``.moe2-*.tmp``, like a temporary file of :func:`replacing` (for
    folders moe2 owns, such as its cache; elsewhere see :func:`remove_leftovers`)."""
    return path.name.startswith(_TEMP_PREFIX) and path.name.endswith(_TEMP_SUFFIX)


def remove_leftovers(directory: str | Path, now: float | None = None) -> int:
    """Remove the temporary files of :func:`replacing` that a killed writer left in ``directory``:
    regular files named exactly as mkstemp names one and untouched for :data:`STALE_AFTER_S` seconds (a younger one
    may be another process's write in progress). Nothing else is touched, and a file that
    cannot be removed is left. Returns how many were removed."""
    cutoff = (time.time() if now is None else now) - STALE_AFTER_S
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if _TEMP_NAME.fullmatch(entry.name) is None:
            continue
        try:
            status = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(status.st_mode) and status.st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write all of ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, "wb" if isinstance(data, bytes) else "w") as stream:
        stream.write(data)


def _umask() -> int:
    # mkstemp makes the file 0600; give it the mode a plain open() would have.
    mask = os.umask(0)
    os.umask(mask)
    return mask
