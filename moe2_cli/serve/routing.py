"""The routing core: the plan's router restricted to a selection S, applied to queries.

One pure function, :func:`route_queries`, answers for ``moe2 route`` and ``moe2 serve`` alike,
so the experts the server calls are, by construction, the ones ``route`` prints. The k experts
it picks are exactly those F(S) credits (:meth:`~moe2_cli.gating.router.Router.within` over the
LLMs of S); the rest of S, in the router's order, is where a failed expert's place is taken from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.gating.router import Router
from moe2_cli.outcomes import Outcomes
from moe2_cli.problem import Instance, members
from moe2_cli.serve.queries import Query


@dataclass(frozen=True)
class Pick:
    """One expert of S for one query: its router score (of its LLM; the gate's h(x)) and top-k
    weight (0 outside the top k)."""

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


def route_queries(router: Router, instance: Instance, mask: int, k: int, queries: Sequence[Query],
                  source: str = "queries") -> list[Route]:
    """Route every query through ``router`` restricted to the experts of ``mask`` (bits over the
    ``instance``'s experts), top ``k``."""
    experts = members(mask)
    if not experts or experts[-1] >= instance.n_experts:
        raise InputError(Diagnostic(source, None, None, f"the selection names no expert of the scenario "
                                                        f"(mask {mask}, {instance.n_experts} experts)"))
    columns = _expert_columns(router, instance)
    allowed = np.zeros(len(router.columns_), dtype=bool)
    allowed[columns[experts]] = True
    within = router.within(query_table(router, queries, source), allowed, k)
    return [_route(instance.expert_ids, query, experts, columns, *rows)
            for query, *rows in zip(queries, within.scores, within.top, within.weights)]


def _expert_columns(router: Router, instance: Instance) -> np.ndarray:
    """The router's column of each expert's LLM (copies of one LLM share it)."""
    missing = [llm for llm in instance.expert_llms if llm not in router.columns_]
    if missing:
        raise InputError(f"the router scores no column for {missing[0]!r} (it knows {', '.join(router.columns_)})")
    return np.array([router.columns_.index(llm) for llm in instance.expert_llms], dtype=np.int64)


def _route(names: tuple[str, ...], query: Query, experts: list[int], columns: np.ndarray, scores: np.ndarray,
           top: np.ndarray, weights: np.ndarray) -> Route:
    # Stable on expert index, so equal scores (and the copies of one LLM) keep the file's order.
    ranked = sorted(experts, key=lambda i: -scores[columns[i]])
    picks = [Pick(expert=names[i], index=i, column=int(columns[i]), score=float(scores[columns[i]]),
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


def query_table(router: Router, queries: Sequence[Query], source: str) -> Outcomes:
    """The queries in the form routers read (scores are not used: zeros)."""
    # A query whose category is still None (not yet inferred) is one the router cannot read.
    index: dict[str | None, int] = {c: i for i, c in enumerate(router.categories_)}
    bad = [q for q in queries if q.category not in index]
    if bad:
        raise InputError([Diagnostic(source, q.line, None, f"category {q.category!r} is not one the router knows "
                                                           f"({', '.join(router.categories_)})") for q in bad])
    mean = router.numeric_mean()
    return Outcomes(qids=tuple(q.id for q in queries), categories=router.categories_,
                    category=np.array([index[q.category] for q in queries], dtype=np.int64),
                    columns=router.columns_, scores=np.zeros((len(queries), len(router.columns_))),
                    texts=tuple(q.text for q in queries), tags=tuple(q.tags for q in queries),
                    features=None if mean is None else _features(mean, queries, source), source=source)


def _features(mean: np.ndarray, queries: Sequence[Query], source: str) -> np.ndarray:
    """Numeric features where the router reads them; a query without them sits at the training
    mean (so only its text, category and tags move the router)."""
    dim = mean.size
    bad = [q for q in queries if q.features is not None and len(q.features) != dim]
    if bad:
        raise InputError([Diagnostic(source, q.line, None, f"features must have {dim} values for this router "
                                                           f"(got {len(q.features or ())})") for q in bad])
    return np.array([mean if q.features is None else q.features for q in queries], dtype=float).reshape(-1, dim)
