"""The router contract: every registered router saves and loads to the same scores, caches like
a trained gate, and a file that is not a router is refused with its name."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.errors import InputError, Moe2Warning
from moe2_cli.gating.registry import ROUTERS, load_router, make_router
from moe2_cli.outcomes import Outcomes

LLMS = ("a", "b", "c")
WORDS = ("algebra", "history", "poetry")


def _table(n: int = 90, seed: int = 0, tags: bool = True) -> Outcomes:
    """LLM i is right on the questions about WORDS[i]; the tag names the word, the category does not."""
    rng = np.random.default_rng(seed)
    topic = np.arange(n) % 3
    scores = (topic[:, None] == np.arange(3)) | (rng.random((n, 3)) < 0.15)
    return Outcomes(qids=tuple(f"q{i}" for i in range(n)), categories=("x", "y"), category=np.arange(n) // 3 % 2,
                    columns=LLMS, scores=scores.astype(float),
                    texts=tuple(f"a question on {WORDS[t]} number {i}" for i, t in enumerate(topic)),
                    features=rng.normal(size=(n, 2)),
                    tags=tuple((WORDS[t],) for t in topic) if tags else None)


@pytest.fixture(scope="module")
def fitted():
    table = _table()
    return {name: make_router(name, k=2, seed=0).fit(table) for name in ROUTERS}


@pytest.mark.parametrize("name", list(ROUTERS))
def test_a_saved_router_loads_to_the_same_scores(fitted, name, tmp_path):
    router, other = fitted[name], _table(30, seed=1)
    router.save(tmp_path / "r.npz")
    loaded = load_router(tmp_path / "r.npz")
    assert (loaded.name, loaded.categories_, loaded.columns_) == (name, ("x", "y"), LLMS)
    np.testing.assert_array_equal(loaded.logits(other), router.logits(other))


@pytest.mark.parametrize("name", list(ROUTERS))
def test_within_keeps_the_top_k_of_s_with_weights_summing_to_one(fitted, name):
    allowed = np.array([True, False, True])
    within = fitted[name].within(_table(30, seed=2), allowed, k=1)
    assert np.all(within.top.sum(axis=1) == 1) and not within.top[:, 1].any()
    np.testing.assert_allclose(within.weights.sum(axis=1), 1.0)
    best = np.where(allowed, within.scores, -np.inf).argmax(axis=1)
    assert np.array_equal(within.top.argmax(axis=1), best)


def test_label_lookup_follows_the_tags_and_falls_back_to_the_category(fitted):
    other = _table(30, seed=3)
    labelled = fitted["label-lookup"].logits(other).argmax(axis=1)
    assert np.array_equal(labelled, np.arange(30) % 3), "each tag's LLM"
    untagged = _table(30, seed=3, tags=False)
    np.testing.assert_array_equal(fitted["label-lookup"].logits(untagged), fitted["lookup"].logits(untagged))
    assert not np.array_equal(fitted["lookup"].logits(other).argmax(axis=1), labelled)


@pytest.mark.parametrize("name", ["lookup", "logreg"])
def test_a_cached_router_is_the_fitted_one_and_a_damaged_entry_refits(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MOE2_CACHE_DIR", str(tmp_path))
    table, other = _table(), _table(30, seed=4)
    first = make_router(name, k=2, seed=0).fit_cached(table)
    entries = list(tmp_path.glob(f"router-{name}-*"))
    assert len(entries) == 1
    router = make_router(name, k=2, seed=0)
    monkeypatch.setattr(type(router), "fit", lambda self, outcomes: pytest.fail("a cache hit fits nothing"))
    np.testing.assert_array_equal(router.fit_cached(table).logits(other), first.logits(other))
    monkeypatch.undo()
    monkeypatch.setenv("MOE2_CACHE_DIR", str(tmp_path))
    entries[0].write_bytes(entries[0].read_bytes()[:-7])  # a truncated entry is a miss, not a traceback
    with pytest.warns(Moe2Warning, match="damaged"):
        refitted = make_router(name, k=2, seed=0).fit_cached(table)
    np.testing.assert_array_equal(refitted.logits(other), first.logits(other))


def test_files_that_are_not_routers_are_refused_with_their_name(tmp_path):
    cases = {"text.npz": None, "anonymous.npz": {"means": np.zeros((2, 3))},
             "unknown.npz": {"router": np.array("forest"), "means": np.zeros((2, 3))},
             "shapes.npz": {"router": np.array("lookup"), "categories": np.array(["x"]),
                            "columns": np.array(list(LLMS)), "means": np.zeros((2, 3))},
             "pickled.npz": {"router": np.array("lookup"), "categories": np.array([{"x": 1}], dtype=object)}}
    for file, arrays in cases.items():
        path = tmp_path / file
        if arrays is None:
            path.write_text("not a zip")
        else:
            np.savez(path, **arrays)
        with pytest.raises(InputError) as err:
            load_router(path)
        assert str(err.value).startswith(f"{path}: not a usable moe2 router file"), str(err.value)


def test_unknown_router_names_the_choices():
    with pytest.raises(ValueError, match="gate, lookup, label-lookup, logreg"):
        make_router("forest", k=2, seed=0)
