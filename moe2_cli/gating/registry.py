"""Every router by name: what ``select --router`` plans with, and what ``route`` and ``serve``
run when a selection file names it.

``lookup`` is per category; ``label-lookup`` per query label (the query's tags) with the
category as fallback; ``logreg`` a per-LLM logistic regression; ``gate`` the trained gate.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.gating.gate_router import GateRouter
from moe2_cli.gating.router import ROUTER_KEY, Router
from moe2_cli.gating.routers import CategoryLookup, LabelLookup, LogisticRouter

ROUTERS: dict[str, type[Router]] = {cls.name: cls for cls in (GateRouter, CategoryLookup, LabelLookup,
                                                               LogisticRouter)}
DEFAULT_ROUTER = "gate"


def router_class(name: str) -> type[Router]:
    """The router registered as ``name``; ValueError naming the choices otherwise."""
    if name not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)} (got {name!r})")
    return ROUTERS[name]


def make_router(name: str, *, k: int, seed: int) -> Router:
    """The unfitted router ``name`` for top-``k`` routing, its randomness from ``seed``."""
    return router_class(name).configured(k=k, seed=seed)


def load_router(path: str | Path) -> Router:
    """A router written by :meth:`Router.save`; anything else is an InputError naming the file
    (arrays are never unpickled)."""
    shown = str(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {name: data[name] for name in data.files}
        name = str(state.pop(ROUTER_KEY)) if ROUTER_KEY in state and state[ROUTER_KEY].ndim == 0 else None
        if name is None:
            raise ValueError("it names no router")
        return router_class(name).from_state(state)
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, KeyError, ValueError, TypeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise InputError(Diagnostic(shown, None, None, f"not a usable moe2 router file ({reason})")) from None
