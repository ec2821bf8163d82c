"""Top-k sparse softmax: pick the k best entries of each row, softmax over them, zero elsewhere.

One primitive for every gate in moe2. The level-2 gating network passes its scores h(x) = Wx + b
as ``logits`` and the experts of a selection S as ``allowed``; the statistics module passes
β0 + β1ᵀx as ``logits`` and, for the paper's convention, β1ᵀx alone as ``select_scores`` (the
bias is added after selection).

Ties go to the lowest index, so the same input always selects the same experts.
"""

from __future__ import annotations

import numpy as np


def topk_mask(logits: np.ndarray, k: int, select_scores: np.ndarray | None = None,
              allowed: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the ``k`` largest ``select_scores`` (default: ``logits``) along the last axis.

    Entries where ``allowed`` is False are never selected; a row with fewer than ``k`` allowed
    entries selects all of them. Equal scores resolve to the lowest index.
    """
    scores = np.asarray(logits if select_scores is None else select_scores, dtype=float)
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    # Stable sorts keep equal scores in index order: that is the tie rule.
    if allowed is None:
        order = np.argsort(-scores, axis=-1, kind="stable")
    else:
        allowed = np.broadcast_to(np.asarray(allowed, dtype=bool), scores.shape)
        # lexsort's last key is the primary one: allowed entries first, then by decreasing score.
        order = np.lexsort((-scores, ~allowed), axis=-1)
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, order[..., :k], True, axis=-1)
    return mask if allowed is None else mask & allowed


def shifted_exp(z: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """``exp(z - top)`` and ``top``, the maximum along ``axis`` (kept as a length-1 axis; 0 where
    every entry is -inf). The one stable core of every softmax and logsumexp in moe2:
    subtracting the maximum keeps exp() finite."""
    top = np.max(z, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.exp(z - top), top


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``; -inf entries get weight 0."""
    w, _ = shifted_exp(z, axis)
    return w / w.sum(axis=axis, keepdims=True)


def logsumexp(z: np.ndarray, axis: int) -> np.ndarray:
    """log Σ exp(z) along ``axis``, safe for -inf entries and large values."""
    w, top = shifted_exp(z, axis)
    with np.errstate(divide="ignore"):
        return np.squeeze(top, axis=axis) + np.log(np.sum(w, axis=axis))


def masked_log_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Log of the softmax of ``logits`` restricted to ``mask`` along the last axis; -inf outside it.

    Rows with an empty mask are -inf everywhere.
    """
    z = np.where(mask, np.asarray(logits, dtype=float), -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        w, top = shifted_exp(z)
        log_norm = np.log(np.sum(w, axis=-1, keepdims=True))
        return np.where(mask, z - top - log_norm, -np.inf)


def masked_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Softmax of ``logits`` over the entries in ``mask`` (each such row sums to 1), 0 elsewhere.

    Rows with an empty mask are all zeros.
    """
    return np.exp(masked_log_softmax(logits, mask))


def topk_softmax(logits: np.ndarray, k: int, select_scores: np.ndarray | None = None,
                 allowed: np.ndarray | None = None) -> np.ndarray:
    """``masked_softmax`` over ``topk_mask``: the sparse gate weights in one call."""
    return masked_softmax(logits, topk_mask(logits, k, select_scores, allowed))
