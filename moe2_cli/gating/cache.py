"""A content-addressed cache of trained gates and cross-fitted logits.

Training is the slow part of building F, and it is a pure function of the outcomes, the
feature settings, the gate settings, k, the number of folds and the seed: entries are keyed by
a SHA-256 of exactly those. A hit returns the same arrays bit for bit, so output is the same
with and without the cache. Files are written to a temporary name and moved into place with
``os.replace``, so a reader never sees half an entry; an unreadable entry counts as a miss.

The cache lives in the user cache directory (``platformdirs``) unless ``MOE2_CACHE_DIR`` names
another place.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from moe2_cli import __version__
from moe2_cli.errors import InputError
from moe2_cli.gating.model import SavedGate, load_gate, save_gate
from moe2_cli.outcomes import Outcomes
from moe2_cli.replay import CACHE_ENV, cache_root

_LAYOUT = 1  # bump when what an entry holds changes


def cache_dir() -> Path:
    """Where entries live: ``$MOE2_CACHE_DIR``, else ``gates`` in the platform's user cache directory."""
    return cache_root() if os.environ.get(CACHE_ENV) else cache_root() / "gates"


def outcomes_digest(outcomes: Outcomes) -> str:
    """A hash of everything in the table that training reads."""
    h = hashlib.sha256()
    for part in (outcomes.qids, outcomes.categories, outcomes.columns, outcomes.texts):
        h.update(json.dumps(part).encode())
    for array in (outcomes.category, outcomes.scores, outcomes.features):
        if array is not None:
            h.update(str(array.shape).encode())
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def entry_key(kind: str, outcomes: Outcomes, settings: dict) -> str:
    """The key of one entry: its kind, the table and the JSON of every setting that matters."""
    text = json.dumps({"kind": kind, "layout": _LAYOUT, "version": __version__, "outcomes": outcomes_digest(outcomes),
                       **settings}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle


class GateCache:
    """Entries in ``root`` (default :func:`cache_dir`); ``enabled=False`` never reads or writes."""

    def __init__(self, enabled: bool = True, root: Path | None = None):
        self.enabled = enabled
        self.root = root or cache_dir()

    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        path = self.root / f"{key}.npz"
        if not self.enabled or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError):
            return None

    def store_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if self.enabled:
            _write_atomically(self.root / f"{key}.npz", lambda p: _save_arrays(p, arrays))

    def load_gate(self, key: str) -> SavedGate | None:
        path = self.root / f"{key}.gate.npz"
        if not self.enabled or not path.is_file():
            return None
        try:
            return load_gate(path)
        except InputError:
            return None

    def store_gate(self, key: str, saved: SavedGate) -> None:
        if self.enabled:
            _write_atomically(self.root / f"{key}.gate.npz", lambda p: save_gate(p, saved))


def clear_cache(root: Path | None = None) -> int:
    """Delete every entry (and stray temporary files); returns how many files were removed."""
    root = root or cache_dir()
    removed = 0
    if root.is_dir():
        for path in root.iterdir():
            if path.is_file() and path.suffix == ".npz":
                path.unlink(missing_ok=True)
                removed += 1
    return removed
