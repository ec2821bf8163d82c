"""Missing scores: read as a mask, filled with per-category means for F, skipped by the gate's
training, written back as missing; a complete file is the same table as before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moe2_cli.errors import InputError, Moe2Warning
from moe2_cli.gating.model import TopKGate
from moe2_cli.outcomes import read_csv, read_jsonl, read_outcomes, write_outcomes

ROWS = [
    {"qid": "q1", "category": "math", "scores": {"a": 1, "b": 0}},
    {"qid": "q2", "category": "math", "scores": {"a": 0, "b": None}},
    {"qid": "q3", "category": "math", "scores": {"a": None, "b": 1}},
    {"qid": "q4", "category": "code", "scores": {"a": 1, "b": 0.5}},
    {"qid": "q5", "category": "code", "scores": {"a": None, "b": 0.25}},
]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_null_is_missing_and_filled_with_the_category_mean(tmp_path):
    table = read_jsonl(write_rows(tmp_path / "o.jsonl", ROWS))
    assert table.observed is not None and table.n_missing == 3
    assert table.observed.tolist() == [[True, True], [True, False], [False, True], [True, True], [False, True]]
    # a's math mean over its present scores is 0.5, b's is 0.5; a's code mean is 1.
    assert table.scores.tolist() == [[1, 0], [0, 0.5], [0.5, 1], [1, 0.5], [1, 0.25]]
    present_means = [[np.mean([1, 0]), np.mean([1])], [np.mean([0, 1]), np.mean([0.5, 0.25])]]
    assert np.allclose(table.mean_scores(), present_means)  # (LLM, category): over the present scores only


def test_empty_csv_cell_is_missing(tmp_path):
    path = tmp_path / "o.csv"
    path.write_text("qid,category,score:a,score:b\nq1,math,1,0\nq2,math,,1\nq3,math,0,\n")
    table = read_csv(path)
    assert table.observed.tolist() == [[True, True], [False, True], [True, False]]
    assert table.scores[1, 0] == 0.5 and table.scores[2, 1] == 0.5


def test_a_category_without_any_score_of_an_llm_is_an_error(tmp_path):
    rows = [*ROWS, {"qid": "q6", "category": "open_qa", "scores": {"a": None, "b": 1}}]
    with pytest.raises(InputError) as err:
        read_jsonl(write_rows(tmp_path / "o.jsonl", rows))
    assert "no score of 'a' in category 'open_qa' (its 1 queries all lack one)" in str(err.value)


def test_a_row_without_any_score_is_an_error_at_its_line(tmp_path):
    rows = [*ROWS, {"qid": "q6", "category": "math", "scores": {"a": None, "b": None}}]
    with pytest.raises(InputError) as err:
        read_jsonl(write_rows(tmp_path / "o.jsonl", rows))
    assert f"o.jsonl:{len(rows)}: scores must give at least one score" in str(err.value)


def test_a_wrong_score_still_names_its_line(tmp_path):
    rows = [*ROWS, {"qid": "q6", "category": "math", "scores": {"a": 2, "b": None}}]
    with pytest.raises(InputError) as err:
        read_jsonl(write_rows(tmp_path / "o.jsonl", rows))
    assert "o.jsonl:6: score of 'a' must be a number in [0, 1] (got 2)" in str(err.value)


@pytest.mark.parametrize("name", ["again.jsonl", "again.csv"])
def test_missing_scores_are_written_back_as_missing(tmp_path, name):
    table = read_jsonl(write_rows(tmp_path / "o.jsonl", ROWS))
    write_outcomes(table, tmp_path / name)
    with pytest.warns(Moe2Warning, match="3 of 10 scores are missing"):
        again = read_outcomes(tmp_path / name)
    assert np.array_equal(again.observed, table.observed) and np.array_equal(again.scores, table.scores)


def test_subsets_and_columns_keep_the_mask(tmp_path):
    table = read_jsonl(write_rows(tmp_path / "o.jsonl", ROWS))
    assert table.subset([1, 2]).observed.tolist() == [[True, False], [False, True]]
    assert table.subset([0, 3]).observed is None  # all present there: no mask, as for a complete file
    assert table.select_columns(["b", "a"]).observed[1].tolist() == [False, True]


def test_a_complete_file_has_no_mask(tmp_path):
    rows = [{**r, "scores": {k: 1 if v is None else v for k, v in r["scores"].items()}} for r in ROWS]
    table = read_jsonl(write_rows(tmp_path / "o.jsonl", rows))
    assert table.observed is None and table.n_missing == 0


def _data(seed=0, q=120, m=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(q, 5))
    scores = (rng.random((q, m)) < 0.3 + 0.4 * (X[:, :1] > 0)).astype(float)
    observed = rng.random((q, m)) < 0.6
    observed[np.arange(q), rng.integers(0, m, q)] = True
    return X, scores, observed


def test_the_gate_never_reads_a_missing_score():
    X, scores, observed = _data()
    other = np.where(observed, scores, 1.0 - scores)  # change every missing score, keep the present ones
    fits = [TopKGate(k=2, max_iter=60, seed=3).fit(X[:80], s[:80], X[80:], s[80:], observed=observed[:80],
                                                   observed_val=observed[80:]) for s in (scores, other)]
    assert np.array_equal(fits[0].W_, fits[1].W_) and np.array_equal(fits[0].b_, fits[1].b_)
    plain = TopKGate(k=2, max_iter=60, seed=3).fit(X[:80], other[:80], X[80:], other[80:])
    assert not np.array_equal(plain.W_, fits[1].W_)  # without the mask the changed scores do count


def test_an_all_present_mask_trains_the_same_gate_as_none():
    X, scores, _ = _data(seed=1)
    everything = np.ones_like(scores, dtype=bool)
    with_mask = TopKGate(k=2, max_iter=40, seed=0).fit(X, scores, observed=everything)
    without = TopKGate(k=2, max_iter=40, seed=0).fit(X, scores)
    assert np.array_equal(with_mask.W_, without.W_) and with_mask.history_ == without.history_
