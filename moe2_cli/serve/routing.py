"""The routing core: the plan's router restricted to a selection S, applied to queries.

One pure function, :func:`route_queries`, answers for ``moe2 route`` and ``moe2 serve`` alike,
so the experts the server calls are, by construction, the ones ``route`` prints. The k experts
it picks are exactly those F(S) credits (:meth:`~moe2_cli.gating.router.Router.within` over the
LLMs of S); the rest of S, in the router's order, is where a failed expert's place is taken from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.gating.router import Router, Within
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


# Queries featurised and scored at once: a file of any length routes in bounded memory, and
# every query's route is the same whatever batch it falls in (routers score queries one by one).
ROUTE_BATCH = 4096


def route_queries(router: Router, instance: Instance, mask: int, k: int, queries: Sequence[Query],
                  source: str = "queries") -> list[Route]:
    """Route every query through ``router`` restricted to the experts of ``mask`` (bits over the
    ``instance``'s experts), top ``k``, :data:`ROUTE_BATCH` queries at a time. Every query is
    checked before the first is routed."""
    experts = np.array(members(mask), dtype=np.int64)
    if not experts.size or experts[-1] >= instance.n_experts:
        raise InputError(Diagnostic(source, None, None, f"the selection names no expert of the scenario "
                                                        f"(mask {mask}, {instance.n_experts} experts)"))
    columns = _expert_columns(router, instance)[experts]
    allowed = np.zeros(len(router.columns_), dtype=bool)
    allowed[columns] = True
    check_readable(router, queries, source)
    names = [instance.expert_ids[i] for i in experts]
    routes: list[Route] = []
    for start in range(0, len(queries), ROUTE_BATCH):
        batch = queries[start:start + ROUTE_BATCH]
        routes.extend(_routes(batch, names, experts, columns, router.within(query_table(router, batch, source),
                                                                            allowed, k)))
    return routes


def _expert_columns(router: Router, instance: Instance) -> np.ndarray:
    """The router's column of each expert's LLM (copies of one LLM share it)."""
    missing = [llm for llm in instance.expert_llms if llm not in router.columns_]
    if missing:
        raise InputError(f"the router scores no column for {missing[0]!r} (it knows {', '.join(router.columns_)})")
    return np.array([router.columns_.index(llm) for llm in instance.expert_llms], dtype=np.int64)


def _routes(queries: Sequence[Query], names: list[str], experts: np.ndarray, columns: np.ndarray,
            within: Within) -> list[Route]:
    """Each query's experts of S (``names``, ``experts`` and their ``columns``, in expert order)
    ranked by score; the top-k are the first copy of each top column in that ranking."""
    rows = np.arange(len(queries))
    # Stable on expert index, so equal scores (and the copies of one LLM) keep the file's order.
    rank = np.argsort(-within.scores[:, columns], axis=1, kind="stable")
    ranked = columns[rank]
    chosen = np.zeros(rank.shape, dtype=bool)
    taken = np.zeros(within.top.shape, dtype=bool)
    for place in range(rank.shape[1]):
        # A second copy of an LLM never takes a top-k slot: the first copy in the ranking does.
        column = ranked[:, place]
        chosen[:, place] = within.top[rows, column] & ~taken[rows, column]
        taken[rows, column] |= chosen[:, place]
    scores = within.scores[rows[:, None], ranked].tolist()
    weights = np.where(chosen, within.weights[rows[:, None], ranked], 0.0).tolist()
    return [_route(query, [Pick(expert=names[r], index=int(experts[r]), column=int(columns[r]), score=s, weight=w)
                           for r, s, w in zip(order, score_row, weight_row)], picked)
            for query, order, score_row, weight_row, picked
            in zip(queries, rank.tolist(), scores, weights, chosen.tolist())]


def _route(query: Query, picks: list[Pick], chosen: list[bool]) -> Route:
    return Route(query=query, chosen=tuple(p for p, c in zip(picks, chosen) if c),
                 fallbacks=tuple(p for p, c in zip(picks, chosen) if not c))


def check_readable(router: Router, queries: Sequence[Query], source: str) -> None:
    """Every query the router can read: a category it knows (a query whose category is still
    None, not yet inferred, is one it cannot) and numeric features of its width. Problems are
    collected over all queries."""
    index = set(router.categories_)
    problems = [Diagnostic(source, q.line, None, f"category {q.category!r} is not one the router knows "
                                                 f"({', '.join(router.categories_)})")
                for q in queries if q.category not in index]
    if problems:
        raise InputError(problems)
    mean = router.numeric_mean()
    dim = 0 if mean is None else mean.size
    problems = [Diagnostic(source, q.line, None, f"features must have {dim} values for this router "
                                                 f"(got {len(q.features or ())})")
                for q in queries if mean is not None and q.features is not None and len(q.features) != dim]
    if problems:
        raise InputError(problems)


def query_table(router: Router, queries: Sequence[Query], source: str) -> Outcomes:
    """The queries, each one :func:`check_readable`, in the form routers read (scores are not
    used: zeros)."""
    index: dict[str | None, int] = {c: i for i, c in enumerate(router.categories_)}
    mean = router.numeric_mean()
    return Outcomes(qids=tuple(q.id for q in queries), categories=router.categories_,
                    category=np.array([index[q.category] for q in queries], dtype=np.int64),
                    columns=router.columns_, scores=np.zeros((len(queries), len(router.columns_))),
                    texts=tuple(q.text for q in queries), tags=tuple(q.tags for q in queries),
                    features=None if mean is None else _features(mean, queries), source=source)


def _features(mean: np.ndarray, queries: Sequence[Query]) -> np.ndarray:
    """Numeric features where the router reads them; a query without them sits at the training
    mean (so only its text, category and tags move the router)."""
    return np.array([mean if q.features is None else q.features for q in queries], dtype=float).reshape(-1, mean.size)
