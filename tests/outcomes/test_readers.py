"""Outcome tables and their readers: the documented JSONL/CSV format, LLMRouter data and
lm-evaluation-harness --log_samples output; bad rows give one located line each."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from moe2_cli.errors import InputError
from moe2_cli.outcomes import (
    LLMROUTER_TASK_MAP,
    Outcomes,
    detect_format,
    read_csv,
    read_jsonl,
    read_llmrouter,
    read_lm_eval,
    read_outcomes,
    write_outcomes,
)
from moe2_cli.problem import Instance
from tests.conftest import FIXTURES, ROOT

LM_EVAL = FIXTURES / "lm_eval"
SHIPPED = ROOT / "examples" / "data" / "llmrouter-outcomes.jsonl.gz"


def table(n=6, seed=0, text=True, features=True) -> Outcomes:
    rng = np.random.default_rng(seed)
    return Outcomes(
        qids=tuple(f"q{i}" for i in range(n)), categories=("math", "code"), category=rng.integers(0, 2, n),
        columns=("llm-a", "llm-b", "llm-c"), scores=np.round(rng.random((n, 3)), 3),
        texts=tuple(f"question {i}, with a comma and \"quotes\"\nand a second line \u2028 here" for i in range(n))
        if text else None,
        features=np.round(rng.normal(size=(n, 4)), 6) if features else None,
    )


def category_names(t: Outcomes) -> list[str]:
    return [t.categories[c] for c in t.category]


def same(a: Outcomes, b: Outcomes) -> bool:
    """Equal tables; the order of category names may differ (a reader lists them as first seen)."""
    return (a.qids == b.qids and category_names(a) == category_names(b)
            and a.columns == b.columns and np.array_equal(a.scores, b.scores) and a.texts == b.texts
            and (a.features is None) == (b.features is None)
            and (a.features is None or np.array_equal(a.features, b.features)))


def lines(err: InputError) -> list[str]:
    return err.lines()


# ---------------------------------------------------------------- moe2's own format


@pytest.mark.parametrize("name", ["o.jsonl", "o.csv", "o.jsonl.gz", "o.csv.gz"])
@pytest.mark.parametrize("text,features", [(True, True), (False, True), (True, False)])
def test_write_then_read_gives_the_same_table(tmp_path, name, text, features):
    original = table(text=text, features=features)
    path = tmp_path / name
    write_outcomes(original, path)
    assert same(read_outcomes(path), original)


def test_gzip_output_is_reproducible(tmp_path):
    write_outcomes(table(), tmp_path / "a.jsonl.gz")
    write_outcomes(table(), tmp_path / "b.jsonl.gz")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_jsonl_bad_rows_each_get_one_located_line(tmp_path):
    good = {"qid": "q1", "category": "math", "scores": {"a": 1, "b": 0.5}}
    rows = [
        json.dumps(good),
        json.dumps({**good, "qid": "q2", "scores": {"a": 1.5, "b": 0}}),  # out of range
        "{not json",
        json.dumps({**good, "qid": "q3", "category": ""}),
        json.dumps({**good, "qid": "q4", "scores": {"a": 1}}),  # missing an LLM
        json.dumps({**good}),  # duplicate qid
        "[1, 2]",
        json.dumps({**good, "qid": "q5", "features": [1, "x"]}),
        json.dumps({**good, "qid": "q6"}),  # fine
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError) as err:
        read_jsonl(path)
    got = lines(err.value)
    assert [g.split(":")[1] for g in got] == ["2", "3", "4", "5", "6", "7", "8"]
    assert all(g.startswith(f"{path}:") for g in got)
    assert "score of 'a' must be a number in [0, 1] (got 1.5)" in got[0]
    assert "missing b" in got[3] and "duplicate qid 'q1'" in got[4]


def test_csv_bad_cells_are_located(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("qid,category,text,score:a,score:b\nq1,math,\"two\nlines\",1,0\nq2,math,x,1,nope\nq3,,x,1,0\n"
                    "q4,math,x,1\n")
    with pytest.raises(InputError) as err:
        read_csv(path)
    assert [g.split(":")[1] for g in lines(err.value)] == ["4", "5", "6"]


def test_csv_without_score_columns_is_refused(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("qid,category,a,b\nq1,math,1,0\n")
    with pytest.raises(InputError, match="score:<llm>"):
        read_csv(path)


def test_empty_and_non_utf8_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="no outcome rows"):
        read_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "latin.jsonl").write_bytes(b'{"qid": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"latin\.jsonl:1:13: not UTF-8"):
        read_jsonl(tmp_path / "latin.jsonl")


def test_task_map_renames_and_reports_unmapped_tasks_once(tmp_path):
    rows = [{"qid": f"q{i}", "category": c, "scores": {"a": 1}} for i, c in enumerate(["gsm8k", "mbpp", "xx", "xx"])]
    path = tmp_path / "o.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError) as err:
        read_jsonl(path, {"gsm8k": "math", "mbpp": "code"})
    assert lines(err.value) == [f"{path}:3: task 'xx' is not in the task map (it maps: gsm8k, mbpp)"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    assert read_jsonl(path, {"gsm8k": "math", "mbpp": "code"}).categories == ("math", "code")


# ---------------------------------------------------------------- expanding to an instance


def instance(llms, categories=("math", "code"), shares=(0.5, 0.5)) -> Instance:
    n, c = len(llms), len(categories)
    return Instance(name="t", expert_ids=tuple(f"s{i}/{m}" for i, m in enumerate(llms)), expert_llms=tuple(llms),
                    expert_server=np.arange(n), server_names=tuple(f"s{i}" for i in range(n)),
                    transmission_s=np.zeros(n), categories=tuple(categories), shares=np.array(shares),
                    latency_s=np.ones((n, c)), energy_j=np.ones((n, c)), accuracy=np.full((n, c), 0.5), top_k=2,
                    aggregation_s=0.0)


def test_one_llm_on_two_servers_shares_its_answers():
    t = table()
    inst = instance(["llm-c", "llm-a", "llm-c"], categories=("code", "math"))
    per_expert = t.for_instance(inst)
    assert per_expert.columns == inst.expert_ids
    np.testing.assert_array_equal(per_expert.scores[:, 0], t.scores[:, 2])
    np.testing.assert_array_equal(per_expert.scores[:, 0], per_expert.scores[:, 2])
    # categories follow the instance's order
    assert [per_expert.categories[c] for c in per_expert.category] == [t.categories[c] for c in t.category]
    per_llm = t.for_instance(inst, per="llm")
    assert per_llm.columns == ("llm-c", "llm-a")


def test_for_instance_reports_what_is_missing():
    with pytest.raises(InputError) as err:
        table().for_instance(instance(["llm-a", "llm-z"], categories=("math", "open_qa")))
    got = lines(err.value)
    assert any("no scores for LLM 'llm-z'" in g for g in got)
    assert any("category 'code'" in g and "is not a category" in g for g in got)
    with pytest.raises(InputError, match="category 'open_qa' has traffic share 0.2 but no queries"):
        table().for_instance(instance(["llm-a"], categories=("math", "code", "open_qa"), shares=(0.4, 0.4, 0.2)))


# ---------------------------------------------------------------- LLMRouter


def test_shipped_llmrouter_data_reads_with_the_task_map():
    data = read_llmrouter(SHIPPED, LLMROUTER_TASK_MAP)
    assert data.n_queries == 5608
    assert set(data.categories) == {"mcq", "math", "code", "open_qa"}
    assert len(data.columns) == 6 and "qwen2.5-7b-instruct" in data.columns
    assert data.texts is not None and all(data.texts)
    assert detect_format(SHIPPED) == "llmrouter"
    # Per-query oracle of the six edge models, as the data's own description states (0.73-0.74).
    assert 0.70 < data.scores.max(axis=1).mean() < 0.76


def test_llmrouter_bad_rows(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join([
        json.dumps({"qid": "a", "task": "gsm8k", "question": "1+1?", "scores": {"m": 1.0}}),
        json.dumps({"qid": "b", "task": "gsm8k", "question": "", "scores": {"m": 1.0}}),
        json.dumps({"qid": "c", "task": "gsm8k", "question": "2+2?", "scores": {"m": "yes"}}),
    ]) + "\n")
    with pytest.raises(InputError) as err:
        read_outcomes(path)
    assert [g.split(":", 2)[1:] for g in lines(err.value)] == [
        ["2", " question must be a non-empty string (got '')"],
        ["3", " score of 'm' must be a number in [0, 1] (got 'yes')"]]


# ---------------------------------------------------------------- lm-evaluation-harness


def test_lm_eval_samples_import():
    data = read_lm_eval(LM_EVAL / "good", task_map={"arc_challenge": "mcq", "gsm8k": "math"})
    assert data.columns == ("llama-3.1-8b-instruct", "qwen2.5-7b-instruct")
    assert data.qids == tuple(f"{t}/{i}" for t in ("arc_challenge", "gsm8k") for i in range(3))
    assert [data.categories[c] for c in data.category] == ["mcq"] * 3 + ["math"] * 3
    # acc for arc_challenge (the newest of Qwen's two runs), exact_match of the first filter for gsm8k
    np.testing.assert_array_equal(data.scores.T, [[0, 1, 1, 0, 0, 1], [1, 1, 0, 1, 0, 1]])
    assert data.texts[0].startswith("An astronomer observes")
    assert data.texts[3].startswith("Janet's ducks")
    flexible = read_lm_eval(LM_EVAL / "good", filter_name="flexible-extract")
    np.testing.assert_array_equal(flexible.scores.T, [[1, 0, 1], [1, 1, 1]])
    assert detect_format(LM_EVAL / "good") == "lm-eval"


def test_lm_eval_bad_rows_and_missing_documents(tmp_path):
    with pytest.raises(InputError) as err:
        read_outcomes(LM_EVAL / "bad")
    got = lines(err.value)
    assert [g.rsplit(".jsonl:", 1)[1].split(":")[0] for g in got] == ["2", "3", "4"]
    assert "acc must be a number in [0, 1] (got 2.0)" in got[0]
    assert "doc_id must be a non-negative integer (got nothing)" in got[1]
    with pytest.raises(InputError, match="has no score for 1 queries that other models scored"):
        read_outcomes(LM_EVAL / "missing")
    with pytest.raises(InputError, match="lm-eval output holds no samples"):
        read_lm_eval(tmp_path)


def test_unreadable_paths(tmp_path):
    with pytest.raises(InputError, match="cannot read outcomes"):
        read_outcomes(tmp_path / "nope.jsonl")
    raw = tmp_path / "broken.jsonl.gz"
    raw.write_bytes(gzip.compress(b'{"a": 1}\n')[:-6])
    with pytest.raises(InputError, match="corrupt gzip"):
        read_outcomes(raw)
