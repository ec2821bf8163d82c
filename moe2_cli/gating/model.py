"""The level-2 gate: a top-k sparse softmax gating network trained in numpy.

Scores are ``h(x) = W x + b`` (or ``W tanh(W1 x + b1) + b`` with a hidden layer). For a
selection S the gate keeps the k highest scores inside S and takes a softmax over them
(:func:`restrict`, a pure function of the scores and the mask). The ensemble's chance of the
right answer is ``sum_n w_n(x) p_n(y|x)``, with p_n the expert's score (a probability, or 0/1
correctness floored at ``floor`` so the log stays finite).

Training minimises the mean ensemble cross-entropy ``-log sum_n w_n p_n`` on the full expert
set, by full-batch Adam with early stopping on a validation split. Top-k selection passes no
gradient to unselected experts, so a dense-softmax term (weight ``dense_weight``) keeps every
expert's score informative: that ranking is what a restricted gate falls back on. With
``expert_dropout`` each step hides every expert from each query with that probability (one
always stays) before the top-k, so the ranking is trained for the restricted use it gets: the
gate restricted to S stays close to a gate retrained on S, and F close to monotone.

A missing score (an expert never asked that query) is skipped, not guessed: that expert is
hidden from that query in training, as dropout hides one, so the loss of a query is its
ensemble over the experts with a score, and nothing pulls the gate towards or away from an
expert where its answer is unknown.

Cross-entropy rewards hedged weights, while expected accuracy ``sum_n w_n p_n`` rewards
committing to the expert most likely right. With ``sharpen`` the fitted scores are finally
multiplied by the temperature from :data:`SHARPEN_GRID` that maximises the validation expected
accuracy: the ranking (and so the restriction to any S) is unchanged, and the gate is still
``h(x) = W x + b`` with W and b scaled.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.fileio import atomic_output
from moe2_cli.gating.features import FeatureSpec, QueryFeaturizer
from moe2_cli.gating.topk import softmax, topk_mask, topk_softmax
from moe2_cli.problem import masks_to_bool
from moe2_cli.progress import ProgressCallback, ProgressEvent
from moe2_cli.rng import stream

FILE_FORMAT = "moe2-gate"
FILE_VERSION = 1
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
MAX_GATE_BYTES = 1 << 30  # unpacked; a small hostile archive may claim gigabytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same weights give the same bytes
SHARPEN_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def allowed_experts(mask: int | None, n: int) -> np.ndarray | None:
    """The boolean row of a bit mask over n experts (None: all experts)."""
    return None if mask is None else masks_to_bool(np.array([mask]), n)[0]


def restrict(logits: np.ndarray, k: int, mask: int | None = None) -> np.ndarray:
    """Gate weights (Q, N) for selection ``mask``: softmax over the k highest scores inside it."""
    return topk_softmax(logits, k, allowed=allowed_experts(mask, logits.shape[1]))


def floored(scores: np.ndarray, floor: float) -> np.ndarray:
    """p_n(y|x): the score, floored so that log and division stay finite."""
    return np.maximum(scores, floor)


def mixture_loss(logits: np.ndarray, p: np.ndarray, selected: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean of ``-log sum_{n in selected} w_n p_n`` with w the softmax over ``selected``, and its
    gradient in the logits: ``(w - r) / Q`` with r the posterior responsibilities."""
    w = softmax(np.where(selected, logits, -np.inf), axis=1)
    joint = w * p
    mix = joint.sum(axis=1, keepdims=True)
    return float(-np.log(mix).mean()), (w - joint / mix) / len(p)


@dataclass(frozen=True)
class FitHistory:
    """What training did: iterations run, the best one (weights kept), losses, and the
    sharpening temperature applied afterwards (1 without sharpening)."""

    iterations: int
    best_iteration: int
    train_loss: float
    validation_loss: float
    temperature: float = 1.0


class TopKGate:
    """Estimator: ``fit(X, scores, X_val, scores_val)`` returns self; learned weights end in
    ``_`` (``W_``, ``b_``, and ``W1_``, ``b1_`` with a hidden layer)."""

    def __init__(self, k: int = 2, hidden: int = 0, l2: float = 1e-4, learning_rate: float = 0.01,
                 max_iter: int = 400, patience: int = 50, floor: float = 1e-3, dense_weight: float = 0.5,
                 expert_dropout: float = 0.5, sharpen: bool = True, seed: int = 0):
        self.k = k
        self.hidden = hidden
        self.l2 = l2
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.patience = patience
        self.floor = floor
        self.dense_weight = dense_weight
        self.expert_dropout = expert_dropout
        self.sharpen = sharpen
        self.seed = seed

    # ------------------------------------------------------------ forward

    def _forward(self, params: dict[str, np.ndarray], X):
        if "W1" in params:
            hidden = np.tanh(X @ params["W1"] + params["b1"])
            return hidden @ params["W"] + params["b"], hidden
        return X @ params["W"] + params["b"], None

    def logits(self, X) -> np.ndarray:
        """Scores h(x), shape (Q, N)."""
        return self._forward(self._learned(), X)[0]

    def predict(self, X, mask: int | None = None) -> np.ndarray:
        """Gate weights (Q, N) inside selection ``mask`` (all experts when None)."""
        return restrict(self.logits(X), self.k, mask)

    def _learned(self) -> dict[str, np.ndarray]:
        names = ("W", "b", "W1", "b1") if self.hidden else ("W", "b")
        return {n: getattr(self, n + "_") for n in names}

    # ------------------------------------------------------------ training

    def _init(self, dim: int, p: np.ndarray, rng: np.random.Generator,
              observed: np.ndarray | None = None) -> dict[str, np.ndarray]:
        n = p.shape[1]
        # Start from the experts' mean scores, so the untrained gate ranks them by accuracy.
        mean = p.mean(axis=0) if observed is None else (p * observed).sum(axis=0) / np.maximum(observed.sum(axis=0), 1)
        prior = np.log(np.maximum(mean, self.floor))
        params = {"W": np.zeros((self.hidden or dim, n)), "b": prior - prior.mean()}
        if self.hidden:
            params["W"] = rng.standard_normal((self.hidden, n)) * 0.1
            params["W1"] = rng.standard_normal((dim, self.hidden)) / np.sqrt(dim)
            params["b1"] = np.zeros(self.hidden)
        return params

    def _loss(self, params, X, p, allowed: np.ndarray | None = None, with_grad: bool = False):
        """Top-k ensemble cross-entropy (plus the dense term) inside ``allowed`` (None: all)."""
        logits, hidden = self._forward(params, X)
        top = topk_mask(logits, self.k, allowed=allowed)
        loss, g = mixture_loss(logits, p, top)
        if self.dense_weight:
            dense_loss, dense_g = mixture_loss(logits, p, np.ones_like(top) if allowed is None else allowed)
            loss, g = loss + self.dense_weight * dense_loss, g + self.dense_weight * dense_g
        if not with_grad:
            return loss, None
        return loss, self._backward(params, X, hidden, g)

    def _dropout(self, rng: np.random.Generator, shape, observed: np.ndarray | None) -> np.ndarray | None:
        """Which experts each training query may use this step: one random expert always may,
        and never one without a score (``observed`` False)."""
        if not self.expert_dropout:
            return observed
        allowed = rng.random(shape) >= self.expert_dropout
        allowed[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] = True
        if observed is None:
            return allowed
        allowed &= observed
        empty = np.flatnonzero(~allowed.any(axis=1))
        if empty.size:  # the expert kept was one without a score: keep a random one with a score
            pick = np.argmax(rng.random((empty.size, shape[1])) * observed[empty], axis=1)
            allowed[empty, pick] = True
        return allowed

    def _backward(self, params, X, hidden, g):
        grads = {"b": g.sum(axis=0)}
        if hidden is None:
            grads["W"] = np.asarray(X.T @ g) + self.l2 * params["W"]
            return grads
        grads["W"] = hidden.T @ g + self.l2 * params["W"]
        inner = (g @ params["W"].T) * (1.0 - hidden**2)
        grads["W1"] = np.asarray(X.T @ inner) + self.l2 * params["W1"]
        grads["b1"] = inner.sum(axis=0)
        return grads

    def fit(self, X, scores: np.ndarray, X_val=None, scores_val: np.ndarray | None = None, *,
            observed: np.ndarray | None = None, observed_val: np.ndarray | None = None,
            progress: ProgressCallback | None = None) -> TopKGate:
        """Minimise the ensemble cross-entropy on (X, scores); keep the weights with the lowest
        validation loss and stop after ``patience`` iterations without improvement. Without a
        validation split, the training loss decides. ``observed`` (and ``observed_val``) mark
        the scores present (None: all); missing ones are skipped. ``progress`` gets a
        ``training`` event per iteration, with the validation loss in its values."""
        p = floored(np.asarray(scores, dtype=float), self.floor)
        p_val = p if scores_val is None else floored(np.asarray(scores_val, dtype=float), self.floor)
        X_val = X if X_val is None else X_val
        observed_val = observed if scores_val is None else observed_val
        rng = stream(self.seed, "gate-init")
        params = self._init(X.shape[1], p, rng, observed)
        moments = {n: (np.zeros_like(v), np.zeros_like(v)) for n, v in params.items()}
        best = (np.inf, 0, params, np.inf)
        for it in range(1, self.max_iter + 1):
            train_loss, grads = self._loss(params, X, p, self._dropout(rng, p.shape, observed), with_grad=True)
            params = self._adam_step(params, grads, moments, it)
            val_loss = self._loss(params, X_val, p_val, observed_val)[0]
            if progress is not None:
                progress(ProgressEvent("training", it, self.max_iter, {"validation_loss": val_loss}))
            if val_loss < best[0] - 1e-9:
                best = (val_loss, it, params, train_loss)
            elif it - best[1] >= self.patience:
                break
        params, temperature = best[2], 1.0
        if self.sharpen:
            temperature = self._temperature(params, X_val, np.asarray(scores if scores_val is None else scores_val),
                                            observed_val)
            params = {**params, "W": params["W"] * temperature, "b": params["b"] * temperature}
        for name, value in params.items():
            setattr(self, name + "_", value)
        self.history_ = FitHistory(iterations=it, best_iteration=best[1], train_loss=best[3], validation_loss=best[0],
                                   temperature=temperature)
        return self

    def _temperature(self, params, X_val, scores_val: np.ndarray, observed_val: np.ndarray | None) -> float:
        """The grid temperature with the best validation expected accuracy (the smallest on ties),
        each query's top k taken among the experts with a score."""
        logits = self._forward(params, X_val)[0]
        accuracy = [float((topk_softmax(t * logits, self.k, allowed=observed_val) * scores_val).sum(axis=1).mean())
                    for t in SHARPEN_GRID]
        return SHARPEN_GRID[int(np.argmax(accuracy))]

    def _adam_step(self, params, grads, moments, it: int) -> dict[str, np.ndarray]:
        beta1, beta2 = _ADAM_BETAS
        out = {}
        for name, value in params.items():
            m, v = moments[name]
            m[:] = beta1 * m + (1 - beta1) * grads[name]
            v[:] = beta2 * v + (1 - beta2) * grads[name] ** 2
            step = self.learning_rate * (m / (1 - beta1**it)) / (np.sqrt(v / (1 - beta2**it)) + _ADAM_EPS)
            out[name] = value - step
        return out

    def settings(self) -> dict:
        return {k: getattr(self, k) for k in ("k", "hidden", "l2", "learning_rate", "max_iter", "patience", "floor",
                                              "dense_weight", "expert_dropout", "sharpen", "seed")}


# ---------------------------------------------------------------- saving and loading


@dataclass(frozen=True)
class SavedGate:
    """A trained gate with what it needs to be reused: its featuriser, the columns (LLMs) it
    scores, and the experts it was trained for with the column each one hosts."""

    gate: TopKGate
    featurizer: QueryFeaturizer
    columns: tuple[str, ...]
    experts: tuple[str, ...] = ()
    expert_columns: tuple[int, ...] = ()


def gate_parts(saved: SavedGate) -> tuple[dict, dict[str, np.ndarray]]:
    """Everything a saved gate holds: its metadata (plain JSON) and its named arrays."""
    gate = saved.gate
    meta = {"format": FILE_FORMAT, "version": FILE_VERSION, "columns": list(saved.columns),
            "experts": list(saved.experts), "expert_columns": [int(c) for c in saved.expert_columns],
            "gate": gate.settings(), "features": saved.featurizer.spec.to_dict(),
            "training": vars(gate.history_)}
    arrays = {f"gate_{n}": v for n, v in gate._learned().items()}
    arrays.update({f"features_{n}": v for n, v in saved.featurizer.state().items()})
    return meta, arrays


def gate_from_parts(meta: dict, arrays: dict[str, np.ndarray]) -> SavedGate:
    """The gate of :func:`gate_parts`, checked as :func:`load_gate` checks a file; ValueError
    when the parts do not hold a consistent gate."""
    try:
        _require(isinstance(meta, dict) and meta.get("format") == FILE_FORMAT
                 and meta.get("version") == FILE_VERSION, f"the metadata is not {FILE_FORMAT} version {FILE_VERSION}")
        return _saved_gate(meta, arrays)
    except (_GateFileError, KeyError, TypeError) as err:
        raise ValueError(f"not a usable moe2 gate: {err}") from None


def save_gate(path: str | Path, saved: SavedGate) -> None:
    """Write weights and metadata as an ``.npz`` (a zip of .npy arrays plus ``meta.json``).
    Entries carry a fixed timestamp, so the same weights always give the same bytes."""
    with atomic_output(path, "wb") as stream:
        write_gate(stream, saved)


def write_gate(stream: IO[bytes], saved: SavedGate) -> None:
    """The bytes of :func:`save_gate`, written to an open binary stream."""
    meta, arrays = gate_parts(saved)
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("meta.json", _ZIP_TIME), json.dumps(meta, indent=1, sort_keys=True))
        for name, value in sorted(arrays.items()):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def load_gate(path: str | Path | IO[bytes], shown: str | None = None) -> SavedGate:
    """Read a file (or binary stream) written by :func:`save_gate`; anything else, corrupt or
    hostile, is an InputError naming ``shown`` or the file (arrays are never unpickled, and
    their size is bounded)."""
    shown = shown or str(path)
    try:
        meta, arrays = _read_archive(path)
        return _saved_gate(meta, arrays)
    except _GateFileError as err:
        raise InputError(Diagnostic(shown, None, None, f"not a usable moe2 gate file: {err}")) from None
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, KeyError, ValueError, TypeError,
            RecursionError, NotImplementedError) as err:
        reason = getattr(err, "strerror", None) or err
        raise InputError(Diagnostic(shown, None, None, f"not a moe2 gate file ({reason})")) from None


class _GateFileError(Exception):
    """A gate file that reads but does not hold a consistent gate."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise _GateFileError(message)


def _read_archive(path: str | Path | IO[bytes]) -> tuple[dict, dict[str, np.ndarray]]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        _require(sum(i.file_size for i in infos) <= MAX_GATE_BYTES, f"it unpacks to more than {MAX_GATE_BYTES} bytes")
        meta = json.loads(archive.read("meta.json"))
        arrays = {name[:-4]: _read_array(name, archive.read(name)) for name in archive.namelist()
                  if name.endswith(".npy")}
    _require(isinstance(meta, dict), "meta.json is not an object")
    _require(meta.get("format") == FILE_FORMAT and meta.get("version") == FILE_VERSION,
             f"meta.json does not say format {FILE_FORMAT} version {FILE_VERSION}")
    return meta, arrays


def _read_array(name: str, data: bytes) -> np.ndarray:
    try:
        with warnings.catch_warnings():  # e.g. a header numpy reads as Python 2's: not the user's concern
            warnings.simplefilter("ignore")
            return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # numpy parses the header with ast: hostile bytes raise SyntaxError and more
        raise _GateFileError(f"{name} is not a plain numeric array ({type(err).__name__})") from None


def _strings(value, what: str) -> tuple[str, ...]:
    _require(isinstance(value, list) and all(isinstance(v, str) for v in value), f"{what} is not a list of names")
    return tuple(value)


def _saved_gate(meta: dict, arrays: dict[str, np.ndarray]) -> SavedGate:
    columns, experts = _strings(meta.get("columns"), "columns"), _strings(meta.get("experts"), "experts")
    hosts: list[int] = meta.get("expert_columns")  # type: ignore[assignment]  # checked next
    _require(isinstance(hosts, list) and len(hosts) == len(experts) and all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(columns) for c in hosts),
        "expert_columns does not index the columns once per expert")
    for part in ("gate", "features", "training"):
        _require(isinstance(meta.get(part), dict), f"meta.json has no {part} object")
    gate = TopKGate(**meta["gate"])
    spec = FeatureSpec.from_dict(meta["features"])
    _require(isinstance(gate.k, int) and 1 <= gate.k <= max(len(columns), 1), "k is not between 1 and the columns")
    _require(isinstance(gate.hidden, int) and 0 <= gate.hidden, "hidden is not a non-negative integer")
    for name, value in arrays.items():
        _require(value.dtype.kind == "f" and bool(np.all(np.isfinite(value))), f"{name} is not finite floats")
    _check_shapes(arrays, spec, gate.hidden, len(columns))
    for name, value in arrays.items():
        if name.startswith("gate_"):
            setattr(gate, name[len("gate_"):] + "_", value)
    gate.history_ = FitHistory(**meta["training"])
    state = {n[len("features_"):]: v for n, v in arrays.items() if n.startswith("features_")}
    featurizer = QueryFeaturizer.from_state(spec, state)
    return SavedGate(gate=gate, featurizer=featurizer, columns=columns, experts=experts, expert_columns=tuple(hosts))


def _check_shapes(arrays: dict[str, np.ndarray], spec: FeatureSpec, hidden: int, n: int) -> None:
    """Every array the gate and featuriser use, with the shape the spec and the columns imply."""
    _require(all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (spec.text_dim, spec.numeric_dim)),
             "the feature sizes are not non-negative integers")
    _require(isinstance(spec.ngram_max, int) and not isinstance(spec.ngram_max, bool) and spec.ngram_max >= 1,
             "ngram_max is not a positive integer")
    wanted = {"gate_W": ((hidden or spec.dim), n), "gate_b": (n,)}
    if hidden:
        wanted.update(gate_W1=(spec.dim, hidden), gate_b1=(hidden,))
    if spec.text_dim and spec.tfidf:
        wanted["features_idf"] = (spec.text_dim,)
    if spec.numeric_dim:
        wanted.update(features_numeric_mean=(spec.numeric_dim,), features_numeric_scale=(spec.numeric_dim,))
    for name, shape in wanted.items():
        _require(name in arrays and arrays[name].shape == shape,
                 f"{name} has shape {arrays[name].shape if name in arrays else 'none'}, not {shape}")
    if spec.numeric_dim:
        _require(bool(np.all(arrays["features_numeric_scale"] > 0)), "features_numeric_scale is not positive")
