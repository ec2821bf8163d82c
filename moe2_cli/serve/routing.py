"""The routing core: the gate restricted to a selection S, applied to queries.

One pure function, :func:`route_queries`, answers for ``moe2 route`` and ``moe2 serve`` alike,
so the experts the server calls are, by construction, the ones ``route`` prints. The k experts
it picks are exactly those F(S) credits (:func:`~moe2_cli.gating.model.restrict` over the LLMs
of S); the rest of S, in the gate's order, is where a failed expert's place is taken from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.gating.model import SavedGate, restrict
from moe2_cli.gating.topk import topk_mask
from moe2_cli.outcomes import Outcomes
from moe2_cli.problem import members
from moe2_cli.serve.queries import Query


@dataclass(frozen=True)
class Pick:
    """One expert of S for one query: its gate score h(x) (of its LLM) and top-k weight (0
    outside the top k)."""

    expert: str
    index: int
    column: int
    score: float
    weight: float


@dataclass(frozen=True)
class Route:
    """Where one query goes: ``chosen`` (the top k, by decreasing weight) and ``fallbacks``
    (the rest of S by decreasing score; ties to the lower expert index)."""

    query: Query
    chosen: tuple[Pick, ...]
    fallbacks: tuple[Pick, ...]


def route_queries(saved: SavedGate, mask: int, k: int, queries: Sequence[Query],
                  source: str = "queries") -> list[Route]:
    """Route every query through ``saved`` restricted to the experts of ``mask``, top ``k``."""
    experts = members(mask)
    if not experts or experts[-1] >= len(saved.experts):
        raise InputError(Diagnostic(source, None, None, f"the selection names no expert of the gate "
                                                        f"(mask {mask}, {len(saved.experts)} experts)"))
    logits = gate_logits(saved, queries, source)
    columns = np.asarray(saved.expert_columns, dtype=np.int64)
    allowed = np.zeros(logits.shape[1], dtype=bool)
    allowed[columns[experts]] = True
    top = topk_mask(logits, k, allowed=allowed)
    weights = restrict(logits, k, _column_mask(allowed))
    return [_route(saved, query, experts, columns, *rows) for query, *rows in zip(queries, logits, top, weights)]


def gate_logits(saved: SavedGate, queries: Sequence[Query], source: str = "queries") -> np.ndarray:
    """The gate's scores h(x), one row per query and one column per LLM."""
    return saved.gate.logits(saved.featurizer.transform(_as_outcomes(saved, queries, source)))


def _column_mask(allowed: np.ndarray) -> int:
    return sum(1 << int(c) for c in np.flatnonzero(allowed))


def _route(saved: SavedGate, query: Query, experts: list[int], columns: np.ndarray, logits: np.ndarray,
           top: np.ndarray, weights: np.ndarray) -> Route:
    # Stable on expert index, so equal scores (and the copies of one LLM) keep the file's order.
    ranked = sorted(experts, key=lambda i: -logits[columns[i]])
    picks = [Pick(expert=saved.experts[i], index=i, column=int(columns[i]), score=float(logits[columns[i]]),
                  weight=float(weights[columns[i]])) for i in ranked]
    chosen, rest, taken = [], [], set()
    for pick in picks:
        # A second copy of an LLM never takes a top-k slot: the first copy in the ranking does.
        if top[pick.column] and pick.column not in taken:
            chosen.append(pick)
            taken.add(pick.column)
        else:
            rest.append(replace(pick, weight=0.0))
    return Route(query=query, chosen=tuple(chosen), fallbacks=tuple(rest))


def _as_outcomes(saved: SavedGate, queries: Sequence[Query], source: str) -> Outcomes:
    """The queries in the form the featuriser reads (scores are not used: zeros)."""
    spec = saved.featurizer.spec
    index = {c: i for i, c in enumerate(spec.categories)}
    bad = [q for q in queries if q.category not in index]
    if bad:
        raise InputError([Diagnostic(source, q.line, None, f"category {q.category!r} is not one the gate knows "
                                                           f"({', '.join(spec.categories)})") for q in bad])
    return Outcomes(qids=tuple(q.id for q in queries), categories=spec.categories,
                    category=np.array([index[q.category] for q in queries], dtype=np.int64),
                    columns=saved.columns, scores=np.zeros((len(queries), len(saved.columns))),
                    texts=tuple(q.text for q in queries) if spec.text_dim else None,
                    features=_features(saved, queries, source) if spec.numeric_dim else None, source=source)


def _features(saved: SavedGate, queries: Sequence[Query], source: str) -> np.ndarray:
    """Numeric features where the gate uses them; a query without them sits at the training mean
    (so only its text and category move the gate)."""
    dim = saved.featurizer.spec.numeric_dim
    bad = [q for q in queries if q.features is not None and len(q.features) != dim]
    if bad:
        raise InputError([Diagnostic(source, q.line, None, f"features must have {dim} values for this gate "
                                                           f"(got {len(q.features or ())})") for q in bad])
    mean = saved.featurizer.mean_
    return np.array([mean if q.features is None else q.features for q in queries], dtype=float).reshape(-1, dim)
