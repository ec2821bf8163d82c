"""Hashed n-gram counts: the same matrix as scikit-learn's HashingVectorizer, on any text."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils import murmurhash3_32

from moe2_cli.gating.features import WORDS, WORDS_AND_MARKS
from moe2_cli.gating.hashing import hashed_counts, murmur3
from tests.conftest import ROOT

# Words that repeat (so n-grams repeat), mixed case, marks, accents, a final sigma and empty text.
WORD = st.sampled_from(["the", "The", "a", "x", "ΣΑΣ", "ς", "Ünï", "2", "42", "x_y", "?", ",", "-", "(", "é"])
TEXT = st.lists(st.one_of(WORD, st.text(max_size=6)), max_size=30).map(" ".join)


def reference(texts, n_features, pattern, ngram_max) -> sp.csr_matrix:
    vectorizer = HashingVectorizer(n_features=n_features, ngram_range=(1, ngram_max), token_pattern=pattern,
                                   alternate_sign=False, norm=None, dtype=np.float64)
    return sp.csr_matrix(vectorizer.transform(texts))


def assert_same(ours: sp.csr_matrix, theirs: sp.csr_matrix) -> None:
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours.indptr, theirs.indptr)
    np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_array_equal(ours.data, theirs.data)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(TEXT, min_size=1, max_size=8), pattern=st.sampled_from([WORDS, WORDS_AND_MARKS]),
       ngram_max=st.integers(1, 4), n_features=st.sampled_from([16, 2**14, 2**20]))
def test_counts_equal_scikit_learn_s(texts, pattern, ngram_max, n_features):
    assert_same(hashed_counts(texts, n_features, pattern, ngram_max),
                reference(texts, n_features, pattern, ngram_max))


@pytest.mark.parametrize("pattern", [WORDS, WORDS_AND_MARKS])
def test_the_shipped_prompts_hash_as_scikit_learn_hashes_them(pattern):
    rows = [json.loads(line) for line in gzip.open(ROOT / "examples" / "data" / "llmrouter-prompts.jsonl.gz", "rt",
                                                   encoding="utf-8")]
    texts = [r["prompt"] for r in rows] * 2  # repeated texts are counted once and copied
    assert_same(hashed_counts(texts, 2**14, pattern, 2), reference(texts, 2**14, pattern, 2))


def test_no_text_gives_an_empty_matrix_and_a_huge_n_stops_at_the_longest_text():
    assert hashed_counts([], 64, WORDS, 2).shape == (0, 64)
    assert_same(hashed_counts(["one two three"], 64, WORDS, 10**9), reference(["one two three"], 64, WORDS, 3))


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.binary(max_size=300), max_size=20))
def test_murmur3_is_scikit_learn_s_on_keys_short_and_long(keys):
    assert murmur3(keys).tolist() == [murmurhash3_32(k, positive=True) for k in keys]


def test_a_lone_surrogate_hashes_instead_of_failing():
    # With marks as tokens the surrogate is one: twice, and once as a bigram.
    assert hashed_counts(["\ud800 \ud800"], 64, WORDS_AND_MARKS, 2).sum() == 3
