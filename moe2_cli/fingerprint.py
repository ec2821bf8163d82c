"""A fingerprint of moe2's own source: an edited or upgraded checkout is a different program,
and whatever it computed before must not be taken for what it computes now."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@functools.cache
def source_fingerprint() -> str:
    """SHA-256 of every ``moe2_cli/**/*.py`` (relative path and bytes, in sorted order), computed
    once per process: about 100 files, a few milliseconds. Contents, not modification times,
    so a checkout copied elsewhere or touched without change keeps its cache."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        name = path.relative_to(_PACKAGE).as_posix().encode()
        try:
            data = path.read_bytes()
        except OSError:
            data = b"\0unreadable"  # what cannot be read cannot be imported either
        digest.update(b"%d:%s%d:" % (len(name), name, len(data)))  # lengths: no two file sets hash alike
        digest.update(data)
    return digest.hexdigest()
