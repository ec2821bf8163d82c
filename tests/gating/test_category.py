"""The category of a request that names none, inferred from its text: a text-only classifier,
measured out of fold, saved as plain arrays and reported by `gating train`."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from moe2_cli import cachedir
from moe2_cli.cli.gating import _category_line
from moe2_cli.errors import InputError
from moe2_cli.gating.category import CATEGORY_L2, CategoryClassifier, category_inference, deployed_classifier
from moe2_cli.gating.pipeline import scenario_outcomes
from moe2_cli.measure.prompts import load_prompts
from moe2_cli.outcomes import Outcomes, synthesize_for, write_outcomes
from moe2_cli.scenario.scenario import load_scenario
from tests.conftest import ROOT

CATEGORIES = ("math", "code", "trivia")
SHARES = (0.55, 0.25, 0.20)


def _vocabulary_table(n: int = 600, seed: int = 0) -> Outcomes:
    """Each category has words of its own; every text mixes two of them with six shared words."""
    rng = np.random.default_rng(seed)
    category = rng.choice(len(CATEGORIES), size=n, p=SHARES)
    shared = [f"common{k}" for k in range(40)]
    texts = []
    for q, c in enumerate(category):
        words = [f"{CATEGORIES[c]}word{j}" for j in rng.choice(30, 2)] + list(rng.choice(shared, 6))
        texts.append(" ".join(rng.permutation(words)) + f" n{q}")
    return Outcomes(qids=tuple(f"q{q}" for q in range(n)), categories=CATEGORIES, category=category,
                    columns=("llm",), scores=np.ones((n, 1)), texts=tuple(texts))


def test_distinct_vocabularies_are_told_apart_far_better_than_the_majority_class():
    table = _vocabulary_table()
    majority = np.bincount(table.category).max() / table.n_queries
    inference = category_inference(table, folds=4, use_cache=False)
    assert inference is not None and inference["folds"] == 4 and inference["queries"] == table.n_queries
    assert inference["accuracy"] >= majority + 0.3
    assert [c["category"] for c in inference["per_category"]] == list(CATEGORIES)
    assert all(c["accuracy"] >= 0.8 for c in inference["per_category"])  # the small ones too
    classifier = CategoryClassifier().fit(table)
    names, probs = classifier.predict(["triviaword3 common1", "codeword7 codeword2"])
    assert names == ("trivia", "code") and np.all(probs > 0.5)
    # Texts made mostly of n-grams seen once overfit under the weakest penalty: the held-out
    # quarter must have picked a stronger one.
    assert classifier.l2_ > min(CATEGORY_L2)


def test_probabilities_are_one_row_per_text_summing_to_one():
    classifier = CategoryClassifier().fit(_vocabulary_table(200))
    proba = classifier.predict_proba(["mathword1", "", "an unseen sentence"])
    assert proba.shape == (3, len(CATEGORIES))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="sequence of strings"):
        classifier.predict_proba("mathword1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not fitted"):
        CategoryClassifier().predict_proba(["mathword1"])


def test_same_table_and_seed_give_the_same_bits():
    table = _vocabulary_table(300)
    first, second = CategoryClassifier().fit(table).state(), CategoryClassifier().fit(table).state()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert category_inference(table, folds=3, seed=5, use_cache=False) == \
        category_inference(table, folds=3, seed=5, use_cache=False)


def test_saved_state_round_trips_through_npz_without_pickles():
    table = _vocabulary_table(300)
    classifier = CategoryClassifier().fit(table)
    buffer = io.BytesIO()
    np.savez(buffer, **classifier.state())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:
        restored = CategoryClassifier.from_state({k: data[k] for k in data.files})
    assert restored.categories_ == CATEGORIES and restored.settings() == classifier.settings()
    texts = list(table.texts[:50]) + ["nothing known here"]
    assert np.array_equal(restored.predict_proba(texts), classifier.predict_proba(texts))


def test_damaged_state_is_a_clear_error():
    state = CategoryClassifier(text_dim=64).fit(_vocabulary_table(100)).state()
    with pytest.raises(ValueError, match="lacks idf"):
        CategoryClassifier.from_state({k: v for k, v in state.items() if k != "idf"})
    with pytest.raises(ValueError, match="shapes"):
        CategoryClassifier.from_state({**state, "coef": state["coef"][:-1]})
    with pytest.raises(ValueError, match="settings are unreadable"):
        CategoryClassifier.from_state({**state, "settings": np.array("{}")})


def test_the_deployed_classifier_is_cached_and_a_hit_predicts_the_same_bits(tmp_path, monkeypatch):
    monkeypatch.setenv(cachedir.CACHE_ENV, str(tmp_path / "cache"))
    table = _vocabulary_table(300)
    trained = deployed_classifier(table, seed=3)
    assert len(list((tmp_path / "cache").glob("category-*"))) == 1
    monkeypatch.setattr(CategoryClassifier, "fit", lambda *a, **k: pytest.fail("the cache should answer"))
    cached = deployed_classifier(table, seed=3)
    texts = list(table.texts[:40])
    assert cached.predict_proba(texts).tobytes() == trained.predict_proba(texts).tobytes()
    assert cached.categories_ == CATEGORIES and cached.seed == 3


def test_a_table_without_text_has_no_classifier():
    table = _vocabulary_table(50)
    plain = Outcomes(qids=table.qids, categories=table.categories, category=table.category,
                     columns=table.columns, scores=table.scores)
    assert category_inference(plain) is None
    with pytest.raises(InputError, match="no question text"):
        CategoryClassifier().fit(plain)


@pytest.fixture(scope="module")
def llmrouter() -> Outcomes:
    return scenario_outcomes(load_scenario(ROOT / "examples" / "llmrouter-edge.yaml"))


def test_llmrouter_categories_are_inferred_at_least_nine_times_in_ten(llmrouter):
    # Every other shipped query (2,804 of 5,608, to keep the test short), each scored by a
    # classifier that never saw its text and trained on half the data `gating train` uses.
    half = llmrouter.subset(np.arange(0, llmrouter.n_queries, 2))
    inference = category_inference(half, use_cache=False)
    assert inference is not None and inference["queries"] == 2804 and inference["folds"] == 5
    assert inference["accuracy"] >= 0.90
    assert all(c["accuracy"] >= 0.85 for c in inference["per_category"])


def test_llmrouter_prompt_set_categories_from_a_classifier_that_never_saw_them(llmrouter):
    prompts = load_prompts(ROOT / "examples" / "data" / "llmrouter-prompts.jsonl.gz")
    asked = {p.id.rsplit("/", 1)[-1] for p in prompts}  # the prompt ids name their LLMRouter rows
    unseen = np.array([qid not in asked for qid in llmrouter.qids])
    assert (~unseen).sum() == len(prompts)
    names, _ = CategoryClassifier().fit(llmrouter.subset(unseen)).predict([p.text for p in prompts])
    assert np.mean([n == p.category for n, p in zip(names, prompts)]) >= 0.90


def test_gating_train_reports_the_category_inference(run_cli, tmp_path):
    scenario = load_scenario(None)
    synthetic = synthesize_for(scenario.instance, 400, 0)
    words = {c: [f"{c}term{j}" for j in range(12)] for c in synthetic.categories}
    rng = np.random.default_rng(1)
    texts = tuple(" ".join(rng.choice(words[synthetic.categories[c]], 3)) + f" query {q}"
                  for q, c in enumerate(synthetic.category))
    path = tmp_path / "outcomes.jsonl"
    write_outcomes(Outcomes(qids=synthetic.qids, categories=synthetic.categories, category=synthetic.category,
                            columns=synthetic.columns, scores=synthetic.scores, texts=texts), path)
    result = run_cli("gating", "train", "--outcomes", path, "--folds", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    inference = json.loads(result.stdout)["category_inference"]
    assert inference["queries"] == 400 and inference["folds"] == 2 and inference["accuracy"] > 0.9
    assert {c["category"] for c in inference["per_category"]} == set(scenario.instance.categories)
    # The table view's line, from the same record (another run would only retrain the routers).
    line = _category_line(inference)
    assert line.startswith(f"category inferred from text: {100 * inference['accuracy']:.1f} % cross-fitted "
                           "accuracy on 400 queries (2 folds; mcq ")
