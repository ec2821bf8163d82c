"""The router contract: the level-2 model that sends each query to experts of a selection S.

A router is an estimator over a table's LLM columns: ``fit(outcomes)`` returns self, and
``logits(table)`` scores every column for every query. Inside S it keeps the k best-scored LLMs
and takes a softmax over their scores (:meth:`Router.within`): exactly the weights F(S) credits,
and what ``route`` and ``serve`` call. ``state()`` and ``from_state()`` hold the fitted router as
plain arrays, so it saves to an ``.npz`` without pickles and caches like a trained gate.

The implementations and the name -> class registry are in :mod:`.registry`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from moe2_cli.fileio import atomic_output
from moe2_cli.gating.cache import GateCache, entry_key
from moe2_cli.gating.topk import topk_mask, topk_softmax
from moe2_cli.outcomes import Outcomes

R = TypeVar("R", bound="Router")
ROUTER_KEY = "router"  # the array that names the router in a saved file


@dataclass(frozen=True)
class Within:
    """A batch of queries routed inside S: every column's score (Q, M), the top k inside S
    (boolean) and their softmax weights (0 elsewhere)."""

    scores: np.ndarray
    top: np.ndarray
    weights: np.ndarray


class Router(ABC):
    """Fits on outcomes and scores a table's LLM columns for each query; learned state ends in
    ``_``. ``categories_`` and ``columns_`` say which categories it reads and which LLMs it scores."""

    name: ClassVar[str]
    categories_: tuple[str, ...]
    columns_: tuple[str, ...]

    @classmethod
    def configured(cls, *, k: int, seed: int) -> Router:
        """The router as a plan with top-``k`` routing and ``seed`` runs it (settings only)."""
        return cls()

    def settings(self) -> dict:
        """What the fitted router depends on besides the table: its cache key's settings."""
        return {}

    @abstractmethod
    def fit(self, outcomes: Outcomes) -> Router:
        """Learn from every query of ``outcomes`` (one column per LLM)."""

    def fit_cached(self, outcomes: Outcomes, use_cache: bool = True) -> Router:
        """:meth:`fit`, or the same fitted state from the gate cache (keyed by the router's name,
        settings and the table); an entry that does not load counts as a miss."""
        cache = GateCache(use_cache)
        key = entry_key(f"router-{self.name}", outcomes, self.settings())
        hit = cache.load_arrays(key)
        if hit is not None:
            try:
                return self.from_state(hit)
            except (KeyError, ValueError, TypeError):
                pass
        self.fit(outcomes)
        cache.store_arrays(key, self.state())
        return self

    @abstractmethod
    def logits(self, table: Outcomes) -> np.ndarray:
        """Scores (Q, M) of the router's columns for the queries of ``table``; higher is preferred."""

    def numeric_mean(self) -> np.ndarray | None:
        """Numeric features a query without them takes (None: the router reads none)."""
        return None

    def within(self, table: Outcomes, allowed: np.ndarray, k: int) -> Within:
        """The top ``k`` of the ``allowed`` columns (boolean, one per column) for each query,
        with their weights."""
        scores = self.logits(table)
        return Within(scores=scores, top=topk_mask(scores, k, allowed=allowed),
                      weights=topk_softmax(scores, k, allowed=allowed))

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """The fitted router as named numeric or text arrays."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> Router:
        """The router :meth:`state` describes; ValueError when the arrays do not hold one."""

    def save(self, path: str | Path) -> None:
        """Write the fitted router as an ``.npz`` of plain arrays, named by its registry name."""
        arrays = {ROUTER_KEY: np.array(self.name), **self.state()}
        with atomic_output(path, "wb") as stream:
            np.savez(stream, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle


# ---------------------------------------------------------------- helpers for implementations


def names_array(names) -> np.ndarray:
    """Names as a text array (never an object array, so it loads without pickles)."""
    return np.array(list(names), dtype=str)


def names_of(state: dict[str, np.ndarray], key: str) -> tuple[str, ...]:
    array = state[key]
    if array.ndim != 1 or array.dtype.kind != "U":
        raise ValueError(f"{key} is not a list of names")
    return tuple(str(v) for v in array)


def json_array(data: dict) -> np.ndarray:
    return np.array(json.dumps(data, sort_keys=True))


def json_of(state: dict[str, np.ndarray], key: str) -> dict:
    array = state[key]
    if array.ndim != 0 or array.dtype.kind != "U":
        raise ValueError(f"{key} is not a JSON text")
    data = json.loads(str(array))
    if not isinstance(data, dict):
        raise ValueError(f"{key} is not a JSON object")
    return data


def float_array(state: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """A finite float array of the given shape, or ValueError."""
    array = state[key]
    if array.dtype.kind != "f" or array.shape != shape or not np.all(np.isfinite(array)):
        raise ValueError(f"{key} is not finite floats of shape {shape} (got {array.dtype} {array.shape})")
    return array


def names_state(router: Router) -> dict[str, np.ndarray]:
    """The categories and columns every router records."""
    return {"categories": names_array(router.categories_), "columns": names_array(router.columns_)}


def read_names(router: R, state: dict[str, np.ndarray]) -> R:
    """Set the categories and columns of :func:`names_state` on ``router``; returns it."""
    router.categories_, router.columns_ = names_of(state, "categories"), names_of(state, "columns")
    return router
