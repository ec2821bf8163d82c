"""Where moe2 keeps computed artefacts, whether that folder can be trusted, and its size cap.

The folder is ``$MOE2_CACHE_DIR``, else ``gates`` in the platform's user cache directory. An
entry read from a folder that someone else can write could have been planted, so a folder that
is not owned by the current user, or that its group or everyone may write, is never used.
``$MOE2_CACHE_MAX_MB`` caps the entries' total size: the least recently used go first.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from moe2_cli.errors import UsageError

CACHE_ENV = "MOE2_CACHE_DIR"
MAX_MB_ENV = "MOE2_CACHE_MAX_MB"
DEFAULT_MAX_MB = 512


def cache_dir() -> Path:
    """``$MOE2_CACHE_DIR``, else ``gates`` in the platform's user cache directory."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    import platformdirs  # only when needed: it is not free to import

    return Path(platformdirs.user_cache_dir("moe2", appauthor=False)) / "gates"


def max_bytes() -> int:
    """The cap on the entries' total size, from ``$MOE2_CACHE_MAX_MB`` (default 512 MB)."""
    text = os.environ.get(MAX_MB_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_MB * 2**20
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and megabytes >= 0):
        raise UsageError(f"{MAX_MB_ENV} must be a number of megabytes >= 0 (got {text!r})")
    return int(megabytes * 2**20)


def untrusted_reason(folder: Path) -> str | None:
    """Why entries in ``folder`` (which exists) could have been written by someone else, or None."""
    try:
        info = os.stat(folder)
    except OSError as err:
        return f"cannot be examined ({err.strerror or err})"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"is owned by another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"can be written by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def prepare(folder: Path) -> str | None:
    """Create ``folder`` (private to this user) if it is missing; then why it cannot be used, or None."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot be created ({err.strerror or err})"
    return untrusted_reason(folder)


@dataclass(frozen=True)
class Usage:
    """What ``moe2 cache info`` shows."""

    folder: str
    entries: int
    bytes: int
    max_bytes: int
    problem: str | None  # why the folder is not used, if it is not


def usage(folder: Path, suffix: str) -> Usage:
    """The entries (files ending in ``suffix``) in ``folder``, their total size and the cap."""
    sizes = []
    for entry in files(folder, suffix):
        try:
            sizes.append(entry.stat(follow_symlinks=False).st_size)
        except OSError:
            continue
    problem = untrusted_reason(folder) if folder.exists() else None
    return Usage(str(folder), len(sizes), sum(sizes), max_bytes(), problem)


def files(folder: Path, suffix: str) -> list[os.DirEntry]:
    """The regular files in ``folder`` whose name ends in ``suffix`` (none if it is missing)."""
    try:
        with os.scandir(folder) as found:
            return [e for e in found if e.name.endswith(suffix) and e.is_file(follow_symlinks=False)]
    except OSError:
        return []


def evict(folder: Path, suffix: str, limit: int) -> int:
    """Delete the least recently used entries until their total size is at most ``limit``;
    returns how many were deleted. Reading an entry touches its modification time."""
    sized = []
    for entry in files(folder, suffix):
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # removed by another process meanwhile
        sized.append((info.st_mtime_ns, entry.name, info.st_size))
    total, removed = sum(size for _, _, size in sized), 0
    for _, name, size in sorted(sized):
        if total <= limit:
            break
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            pass  # another process evicted it first
        except OSError:
            continue  # a folder that cannot be written cannot shrink either
        total -= size
        removed += 1
    return removed
