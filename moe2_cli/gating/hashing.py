"""Hashed word n-gram counts, bit for bit those of scikit-learn's ``HashingVectorizer``
(lowercased text, ``alternate_sign=False``, no norm), computed once per distinct text and once
per distinct n-gram of a batch.

scikit-learn builds and hashes every n-gram of every text in Python: most of the time of
routing a large query file. Here each text is tokenised once, tokens become integer codes, an
n-gram is a code pair found with numpy, and only the distinct n-grams are joined and hashed.
The hash and the column are scikit-learn's (MurmurHash3 x86 32-bit, seed 0, of the UTF-8 text;
``abs(h) % n_features``), so a gate trained before reads the same columns.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp


def hashed_counts(texts: Sequence[str], n_features: int, token_pattern: str, ngram_max: int) -> sp.csr_matrix:
    """Counts (len(texts), n_features) of the hashed word 1..``ngram_max``-grams of ``texts``."""
    import scipy.sparse as sp

    distinct = list(dict.fromkeys(texts))
    rows, columns = _distinct_counts(distinct, n_features, re.compile(token_pattern), ngram_max)
    counts = sp.csr_matrix((np.ones(rows.size), (rows, columns)), shape=(len(distinct), n_features))
    counts.sum_duplicates()  # also sorts each row's columns, as scikit-learn leaves them
    if len(distinct) == len(texts):
        return counts
    position = {text: i for i, text in enumerate(distinct)}
    return counts[np.fromiter(map(position.__getitem__, texts), dtype=np.int64, count=len(texts))]


def _distinct_counts(texts: list[str], n_features: int, pattern: re.Pattern, ngram_max: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The (row, column) of every n-gram occurrence; a pair repeats once per occurrence."""
    docs = [pattern.findall(text.lower()) for text in texts]
    tokens = list(chain.from_iterable(docs))
    words = list(dict.fromkeys(tokens))
    code = {word: i for i, word in enumerate(words)}
    ids = np.fromiter(map(code.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    doc = np.repeat(np.arange(len(docs)), np.fromiter(map(len, docs), dtype=np.int64, count=len(docs)))
    rows, columns = [doc], [_columns(words, n_features)[ids]]
    starts, grams, names = np.arange(len(tokens)), ids, words
    for n in range(2, ngram_max + 1):
        if not starts.size:  # no text has n - 1 tokens: none has more
            break
        starts, grams, names = _longer(starts, grams, names, n, ids, doc, words)
        rows.append(doc[starts])
        columns.append(_columns(names, n_features)[grams])
    return np.concatenate(rows), np.concatenate(columns)


def _longer(starts: np.ndarray, grams: np.ndarray, names: list[str], n: int, ids: np.ndarray, doc: np.ndarray,
            words: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The n-grams from the (n-1)-grams at ``starts`` (codes ``grams`` into ``names``): each
    one followed by token i + n - 1 of the same text. Returns their starts, codes and names."""
    ends = starts + n - 1
    keep = ends < ids.size
    keep[keep] = doc[starts[keep]] == doc[ends[keep]]
    # A code pair as one integer: both codes are below the number of tokens, so the product stays
    # far inside int64 for any text that fits in memory.
    pairs = grams[keep] * len(words) + ids[ends[keep]]
    seen, codes = np.unique(pairs, return_inverse=True)
    joined = [names[p] + " " + words[w] for p, w in zip((seen // len(words)).tolist(), (seen % len(words)).tolist())]
    return starts[keep], codes, joined


def _columns(grams: list[str], n_features: int) -> np.ndarray:
    """scikit-learn's column of each n-gram: its signed 32-bit MurmurHash3 (seed 0, UTF-8),
    made positive, modulo the width."""
    # A lone surrogate (JSON can carry one) has no UTF-8 form; surrogatepass gives it a stable one.
    keys = [g.encode("utf-8", "surrogatepass") for g in grams]
    hashes = murmur3(keys).astype(np.int64)
    return np.where(hashes >= 2**31, 2**32 - hashes, hashes) % n_features


# MurmurHash3 x86 32-bit (Appleby, public domain), seed 0, as scikit-learn calls it: written here
# so that routing never imports scikit-learn (seconds at start-up).
_C1, _C2, _MASK = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
_LONG_BLOCKS = 64  # keys longer than this many 4-byte blocks are hashed one by one


def murmur3(keys: Sequence[bytes]) -> np.ndarray:
    """The unsigned 32-bit MurmurHash3 of each key: keys of up to :data:`_LONG_BLOCKS` blocks
    together, block by block across keys (numpy), longer ones alone (Python integers)."""
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    out = np.zeros(len(keys), dtype=np.uint32)
    short = np.flatnonzero(lengths <= 4 * _LONG_BLOCKS)
    out[short] = _murmur3_batch([keys[i] for i in short.tolist()], lengths[short])
    for i in np.flatnonzero(lengths > 4 * _LONG_BLOCKS).tolist():
        out[i] = _murmur3_one(keys[i])
    return out


def _murmur3_batch(keys: list[bytes], lengths: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        data = np.frombuffer(b"".join(keys) + bytes(4), dtype=np.uint8).astype(np.uint32)
        starts = np.cumsum(lengths) - lengths
        blocks = lengths // 4
        h = np.zeros(len(keys), dtype=np.uint32)
        for j in range(int(blocks.max(initial=0))):
            live = np.flatnonzero(blocks > j)
            at = starts[live] + 4 * j
            word = data[at] | data[at + 1] << 8 | data[at + 2] << 16 | data[at + 3] << 24
            h[live] = _rotl(h[live] ^ _scramble(word), 13) * np.uint32(5) + np.uint32(0xE6546B64)
        tail, at = lengths % 4, starts + 4 * blocks
        word = np.zeros(len(keys), dtype=np.uint32)
        for byte in (2, 1, 0):
            word ^= np.where(tail > byte, data[np.minimum(at + byte, data.size - 1)], 0).astype(np.uint32) << (8 * byte)
        h ^= np.where(tail > 0, _scramble(word), 0).astype(np.uint32)
        return _fmix(h ^ lengths.astype(np.uint32))


def _scramble(k):
    return _rotl(k * np.uint32(_C1), 15) * np.uint32(_C2)


def _rotl(x, r: int):
    return x << np.uint32(r) | x >> np.uint32(32 - r)


def _fmix(h):
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    return h ^ h >> np.uint32(16)


def _murmur3_one(key: bytes) -> int:
    h = 0
    body = len(key) - len(key) % 4
    for (word,) in struct.iter_unpack("<I", key[:body]):
        h ^= _scramble_int(word)
        h = (_rotl_int(h, 13) * 5 + 0xE6546B64) & _MASK
    if len(key) % 4:
        h ^= _scramble_int(int.from_bytes(key[body:], "little"))
    h ^= len(key)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    return h ^ h >> 16


def _scramble_int(k: int) -> int:
    return (_rotl_int((k * _C1) & _MASK, 15) * _C2) & _MASK


def _rotl_int(x: int, r: int) -> int:
    return (x << r | x >> (32 - r)) & _MASK
