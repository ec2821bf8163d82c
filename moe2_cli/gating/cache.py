"""A verified cache of trained gates and cross-fitted logits.

Training is the slow part of building F. It is a pure function of the outcomes, the feature
settings, the gate settings, k, the number of folds, the seed, moe2's own code and numpy: an
entry's key is a SHA-256 of exactly those (:func:`entry_key`). A hit returns the same arrays
bit for bit, so output is the same with and without the cache.

An entry file is one header line (its key, its payload's size and SHA-256) and the payload;
all three are checked on every read. An entry that fails (empty, truncated, corrupt, or copied
under another key's name) is a miss: it is recomputed and overwritten, with one warning. A
folder that others could write (:mod:`moe2_cli.cachedir`) is never read, and one that cannot
be written costs a warning and the speed, never the answer. Warnings go out as
:class:`~moe2_cli.errors.Moe2Warning` through :mod:`warnings`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
from contextlib import suppress
from pathlib import Path

import numpy as np

from moe2_cli import cachedir
from moe2_cli.errors import InputError, Moe2Warning
from moe2_cli.fileio import is_temporary, replacing
from moe2_cli.fingerprint import source_fingerprint
from moe2_cli.gating.model import SavedGate, load_gate, write_gate
from moe2_cli.outcomes import Outcomes

_LAYOUT = 2  # bump when what an entry holds changes
SUFFIX = ".entry"
_EARLIER_SUFFIXES = (".npz",)  # entries of layout 1, never read now; `cache clear` removes them


def outcomes_digest(outcomes: Outcomes) -> str:
    """A hash of everything in the table that training reads."""
    h = hashlib.sha256()
    for part in (outcomes.qids, outcomes.categories, outcomes.columns, outcomes.texts):
        h.update(json.dumps(part).encode())
    for array in (outcomes.category, outcomes.scores, outcomes.features, outcomes.observed):
        if array is not None:
            h.update(str(array.shape).encode())
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def entry_key(kind: str, outcomes: Outcomes, settings: dict) -> str:
    """The key of one entry: its kind, the table, the JSON of every setting that matters, and
    the code that computes it (moe2's source and numpy's version)."""
    text = json.dumps({"kind": kind, "layout": _LAYOUT, "code": source_fingerprint(), "numpy": np.__version__,
                       "outcomes": outcomes_digest(outcomes), **settings}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


class DamagedEntry(Exception):
    """An entry file that does not hold what its name promises."""


def pack(key: str, payload: bytes) -> bytes:
    """An entry file's bytes: a JSON header line that names the key and checks the payload."""
    header = {"layout": _LAYOUT, "key": key, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    return json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def unpack(key: str, data: bytes) -> bytes:
    """The payload of an entry file written by :func:`pack` for ``key``; else DamagedEntry."""
    if not data:
        raise DamagedEntry("it is empty")
    head, _, payload = data.partition(b"\n")
    try:
        header = json.loads(head)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("layout") != _LAYOUT:
        raise DamagedEntry("it has no header of a moe2 cache entry")
    if header.get("key") != key:
        raise DamagedEntry("it holds the entry of another key")
    if header.get("bytes") != len(payload):
        raise DamagedEntry(f"it holds {len(payload)} of its {header.get('bytes')} bytes")
    if header.get("sha256") != hashlib.sha256(payload).hexdigest():
        raise DamagedEntry("its checksum does not match")
    return payload


def _warn(message: str) -> None:
    # One line per distinct message and run: the CLI shows Moe2Warning with the "default" action.
    warnings.warn(message, Moe2Warning, stacklevel=1)


class GateCache:
    """Entries in ``root`` (default :func:`moe2_cli.cachedir.cache_dir`); ``enabled=False``
    never reads or writes. The folder is created and vetted on first use."""

    def __init__(self, enabled: bool = True, root: Path | None = None):
        self.enabled = enabled
        self.root = root
        self._state: str | None = None  # None: not looked at yet; "ok", "read-only" or "off"
        self._max_bytes = 0

    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        payload = self._load(key)
        if payload is None:
            return None
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            self._damaged(key, "its arrays cannot be read")
            return None

    def store_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        self._store(key, buffer.getvalue())

    def load_gate(self, key: str) -> SavedGate | None:
        payload = self._load(key)
        if payload is None:
            return None
        try:
            return load_gate(io.BytesIO(payload), shown=key)
        except InputError:
            self._damaged(key, "it holds no usable gate")
            return None

    def store_gate(self, key: str, saved: SavedGate) -> None:
        buffer = io.BytesIO()
        write_gate(buffer, saved)
        self._store(key, buffer.getvalue())

    def _folder(self) -> Path | None:
        """The folder to use, or None when caching is off or the folder cannot be trusted."""
        if not self.enabled:
            return None
        if self._state is None:
            self._max_bytes = cachedir.max_bytes()  # a bad setting is reported before any training
            self.root = self.root or cachedir.cache_dir()
            problem = cachedir.prepare(self.root)
            if problem:
                _warn(f"the cache folder {self.root} {problem}; running without the cache")
            self._state = "off" if problem else "ok"
        return self.root if self._state != "off" else None

    def _path(self, folder: Path, key: str) -> Path:
        return folder / f"{key}{SUFFIX}"

    def _load(self, key: str) -> bytes | None:
        folder = self._folder()
        if folder is None:
            return None
        path = self._path(folder, key)
        try:
            payload = unpack(key, path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as err:
            self._damaged(key, f"it cannot be read ({err.strerror or err})")
            return None
        except DamagedEntry as err:
            self._damaged(key, str(err))
            return None
        with suppress(OSError):
            os.utime(path)  # most recently used: the last to be evicted
        return payload

    def _damaged(self, key: str, reason: str) -> None:
        _warn(f"the cache entry {self.root}{os.sep}{key}{SUFFIX} is damaged ({reason}); recomputing it")

    def _store(self, key: str, payload: bytes) -> None:
        folder = self._folder()
        if folder is None or self._state == "read-only":
            return
        try:
            with replacing(self._path(folder, key), "wb") as stream:
                stream.write(pack(key, payload))
            cachedir.evict(folder, SUFFIX, self._max_bytes)
        except OSError as err:
            _warn(f"the cache folder {folder} cannot be written ({err.strerror or err}); running without the cache")
            self._state = "read-only"


def cache_info(root: Path | None = None) -> cachedir.Usage:
    """Where the cache is, how many entries it holds, their size and the cap."""
    return cachedir.usage(root or cachedir.cache_dir(), SUFFIX)


def clear_cache(root: Path | None = None) -> int:
    """Delete every entry, entries of earlier layouts and stray temporary files; returns how
    many files were removed."""
    root = root or cachedir.cache_dir()
    removed = 0
    for entry in cachedir.files(root, ""):
        path = root / entry.name
        if path.suffix in (SUFFIX, *_EARLIER_SUFFIXES) or is_temporary(path):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
