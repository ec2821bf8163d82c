"""The routing core: the top k inside S are exactly those F(S) credits, the rest of S follows in
the router's order, and a second copy of an LLM never takes a top-k slot."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from moe2_cli.errors import InputError
from moe2_cli.gating.model import restrict
from moe2_cli.gating.topk import topk_mask
from moe2_cli.problem import mask_of, members
from moe2_cli.progress import ProgressEvent
from moe2_cli.serve import plan as plan_module
from moe2_cli.serve import routing
from moe2_cli.serve.queries import Query
from moe2_cli.serve.routing import query_table, route_queries
from tests.serve.conftest import EXPERTS, TOPICS


def _queries(n: int = 40) -> list[Query]:
    topics = list(TOPICS.values())
    return [Query(id=str(i), category=("mcq", "math")[i % 2], text=f"please {topics[i % 4]} now {i}")
            for i in range(n)]


@pytest.mark.parametrize("selection", [[0, 1, 2, 3, 4], [1, 3], [0, 4, 2], [4]])
@pytest.mark.parametrize("k", [1, 2])
def test_chosen_experts_are_the_gates_top_k_inside_s(base_plan, selection, k):
    router, instance, mask = base_plan.router, base_plan.scenario.instance, mask_of(selection)
    queries = _queries()
    routes = route_queries(router, instance, mask, k, queries)
    logits = router.logits(query_table(router, queries, "queries"))
    columns = np.array([router.columns_.index(llm) for llm in instance.expert_llms])
    allowed = np.zeros(logits.shape[1], dtype=bool)
    allowed[columns[selection]] = True
    top = topk_mask(logits, k, allowed=allowed)
    weights = restrict(logits, k, mask_of(np.flatnonzero(allowed)))
    for route, row, top_row in zip(routes, weights, top):
        chosen_columns = [p.column for p in route.chosen]
        assert sorted(chosen_columns) == np.flatnonzero(top_row).tolist()
        assert len(set(chosen_columns)) == len(chosen_columns), "a second copy of an LLM took a top-k slot"
        assert {p.index for p in route.chosen} | {p.index for p in route.fallbacks} == set(selection)
        assert sum(p.weight for p in route.chosen) == pytest.approx(1.0)
        assert all(p.weight == 0 for p in route.fallbacks)
        for p in route.chosen:
            assert p.weight == pytest.approx(row[p.column])
        scores = [p.score for p in route.fallbacks]
        assert scores == sorted(scores, reverse=True)


def test_routing_follows_the_text(base_plan):
    """Queries on different topics go to different experts: the text moves the gate."""
    routes = route_queries(base_plan.router, base_plan.scenario.instance, base_plan.mask, 1, _queries(8))
    assert len({r.chosen[0].expert for r in routes}) >= 3


def test_same_queries_same_routes(base_plan):
    first = route_queries(base_plan.router, base_plan.scenario.instance, base_plan.mask, 2, _queries())
    second = route_queries(base_plan.router, base_plan.scenario.instance, base_plan.mask, 2, _queries())
    assert first == second


def test_duplicate_llm_copy_is_a_fallback_only(base_plan):
    """orin-1 and rtx-1 both host qwen2.5-7b-instruct: at most one copy is ever chosen, and the
    other copy is the first stand-in for it among the fallbacks it could replace."""
    copies = [i for i, e in enumerate(EXPERTS) if e.endswith("qwen2.5-7b-instruct")]
    for route in route_queries(base_plan.router, base_plan.scenario.instance, base_plan.mask, 2, _queries()):
        assert sum(p.index in copies for p in route.chosen) <= 1


def test_unknown_category_names_the_line(base_plan):
    with pytest.raises(InputError) as err:
        route_queries(base_plan.router, base_plan.scenario.instance, base_plan.mask, 2,
                      [Query("a", "poetry", "x", line=7)], source="q.jsonl")
    assert str(err.value).startswith("q.jsonl:7: category 'poetry'")


def test_mask_outside_the_scenario_is_refused(base_plan):
    with pytest.raises(InputError):
        route_queries(base_plan.router, base_plan.scenario.instance, 1 << len(EXPERTS), 2, _queries(1))
    assert members(base_plan.mask) == list(range(len(EXPERTS)))


def test_batches_of_any_size_route_as_one(base_plan, monkeypatch):
    """Featurising, inferring categories and scoring a batch at a time changes no route, and
    progress counts the queries routed."""
    queries = [replace(q, category=None) if i % 3 == 0 else q for i, q in enumerate(_queries(50))]
    whole = base_plan.route(queries)
    monkeypatch.setattr(plan_module, "ROUTE_BATCH", 7)
    monkeypatch.setattr(routing, "ROUTE_BATCH", 3)
    events: list[ProgressEvent] = []
    assert base_plan.route(queries, progress=events.append) == whole
    assert [(e.task, e.done, e.total) for e in events] == [("routing", min(d, 50), 50) for d in range(7, 57, 7)]
    assert {r.query.category_source for r in whole} == {"given", "inferred"}


def test_problems_in_every_batch_are_reported_before_any_routing(base_plan, monkeypatch):
    monkeypatch.setattr(routing, "ROUTE_BATCH", 2)
    queries = _queries(6)
    queries[1], queries[5] = replace(queries[1], category="poetry", line=2), replace(queries[5], category="x", line=6)
    with pytest.raises(InputError) as err:
        base_plan.route(queries, source="q.jsonl")
    assert [line.split(":")[:2] for line in err.value.lines()] == [["q.jsonl", "2"], ["q.jsonl", "6"]]
