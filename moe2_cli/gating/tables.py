"""Per-byte lookup tables over column masks, shared by F's k >= 3 path and its box bound.

A column mask is read a byte at a time: for each of the 256 values of a byte of up to 8
columns, a table holds what those columns contribute (their rank bits, or a sum of their
terms), so a mask's total is one gather per byte instead of a loop over its columns.
"""

from __future__ import annotations

import numpy as np


def byte_or(bits: np.ndarray) -> np.ndarray:
    """(Q, h) uint64 bits of up to 8 columns to a (256, Q) table: the OR over each byte value."""
    table = np.zeros((256, bits.shape[0]), dtype="<u8")
    for b in range(bits.shape[1]):
        # Byte values with bit b set are those without it, plus column b's bits (doubling).
        table[1 << b: 2 << b] = table[: 1 << b] | bits[:, b]
    return table


def byte_sum(terms: np.ndarray) -> np.ndarray:
    """(Q, h) terms of up to 8 ranks to a flattened (Q, 256) table: the sum over each byte value's bits."""
    h = terms.shape[1]
    has = ((np.arange(256)[:, None] >> np.arange(h)) & 1).astype(float)
    return (terms @ has.T).reshape(-1)
