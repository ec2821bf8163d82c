"""Parameter files (YAML): read and validate a data-generating model, or write one.

    name: my-model               # optional
    top_k: 2                     # K, the number of experts the gate selects
    select_on: score             # score (β1ᵀx, the paper's) or logit (β1ᵀx + β0); default score
    x: {dist: uniform, low: -1, high: 1}   # or {dist: normal, mean: 0, std: 1}; default uniform
    experts:                     # β1 and a have one entry per input dimension; sigma is a variance
      - {beta0: 0.5, beta1: [3.0], a: [0.5], b: 0.0, sigma: 0.09}

Every problem in a file is reported, each as ``path:line:col: message``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.stats.model import SELECT_ON, MoEParams
from moe2_cli.stats.presets import Truth
from moe2_cli.stats.xdist import X_KINDS, XDist
from moe2_cli.yamlio import MAX_FILE_BYTES, parse_yaml, read_yaml, to_python

MAX_EXPERTS = 64
MAX_DIM = 64
MAX_MAGNITUDE = 1e6  # larger parameters overflow exp() and squares long before they mean anything
MIN_POSITIVE = 1e-8  # smallest variance or standard deviation
MAX_BETA0 = 100.0  # exp(β0) is an atom's mass in the losses; keep it a finite float
_TOP_KEYS = ("name", "top_k", "select_on", "x", "experts")
_EXPERT_KEYS = ("beta0", "beta1", "a", "b", "sigma")
_X_KEYS = {"uniform": ("dist", "dim", "low", "high"), "normal": ("dist", "dim", "mean", "std")}

KeyPath = tuple  # a key path into the document, e.g. ("experts", 1, "sigma")


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


class _Checker:
    """Collects diagnostics with the line and column of the offending value."""

    def __init__(self, source: str, marks: dict[KeyPath, tuple[int, int]]):
        self.source, self.marks = source, marks
        self.problems: list[Diagnostic] = []

    def fail(self, path: KeyPath, message: str) -> None:
        line, col = self.marks.get(path, self.marks.get(path[:-1], (None, None)))
        self.problems.append(Diagnostic(self.source, line, col, f"{_dotted(path)}: {message}"))

    def mapping(self, value: Any, path: KeyPath, allowed: tuple[str, ...]) -> dict:
        if value is None and not path:
            self.fail(path, f"the file is empty; expected a mapping with keys {', '.join(allowed)}")
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping (got {type(value).__name__})")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(path + (key,), f"unknown key (expected one of {', '.join(allowed)})")
        return value

    def number(self, value: Any, path: KeyPath, positive: bool = False, limit: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):
            self.fail(path, f"must be a finite number (got {_shown(value)})")
            return 1.0
        if positive and value <= 0:
            self.fail(path, f"must be > 0 (got {_shown(value)})")
            return 1.0
        limit = limit or MAX_MAGNITUDE
        low, high = (MIN_POSITIVE, limit) if positive else (-limit, limit)
        if not low <= value <= high:
            self.fail(path, f"must be in [{low:g}, {high:g}] (got {_shown(value)})")
            return 1.0
        return float(value)

    def vector(self, value: Any, path: KeyPath, dim: int | None) -> list[float]:
        items = value if isinstance(value, list) else [value]
        if dim is not None and len(items) != dim:
            self.fail(path, f"must have {dim} entries, one per input dimension (got {len(items)})")
            return [0.0] * dim
        if not 1 <= len(items) <= MAX_DIM:
            self.fail(path, f"must have 1 to {MAX_DIM} entries (got {len(items)})")
            return [0.0]
        return [self.number(v, path + ((i,) if isinstance(value, list) else ())) for i, v in enumerate(items)]

    def integer(self, value: Any, path: KeyPath, low: int, high: int) -> int:
        if value is None:
            self.fail(path, f"is required: an integer in {low}..{high}")
            return low
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(path, f"must be an integer in {low}..{high} (got {_shown(value)})")
            return low
        return value


def _experts(check: _Checker, doc: dict) -> tuple[dict[str, list], int]:
    rows = doc.get("experts")
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_EXPERTS:
        check.fail(("experts",), f"must be a list of 1 to {MAX_EXPERTS} experts")
        return {}, 1
    cols: dict[str, list] = {key: [] for key in _EXPERT_KEYS}
    dim = None
    for i, row in enumerate(rows):
        path = ("experts", i)
        row = check.mapping(row, path, _EXPERT_KEYS)
        for key in _EXPERT_KEYS:
            if key not in row:
                check.fail(path, f"missing {key}")
        beta1 = check.vector(row.get("beta1", [0.0] * (dim or 1)), path + ("beta1",), dim)
        dim = dim or len(beta1)
        cols["beta1"].append(beta1)
        cols["a"].append(check.vector(row.get("a", [0.0] * dim), path + ("a",), dim))
        cols["beta0"].append(check.number(row.get("beta0", 0.0), path + ("beta0",), limit=MAX_BETA0))
        cols["b"].append(check.number(row.get("b", 0.0), path + ("b",)))
        cols["sigma"].append(check.number(row.get("sigma", 1.0), path + ("sigma",), positive=True))
    return cols, dim or 1


def _xdist(check: _Checker, doc: dict, dim: int) -> XDist:
    spec = check.mapping(doc.get("x", {"dist": "uniform"}), ("x",), ("dist", "dim", "low", "high", "mean", "std"))
    kind = spec.get("dist", "uniform")
    if kind not in X_KINDS:
        check.fail(("x", "dist"), f"must be one of {', '.join(X_KINDS)} (got {_shown(kind)})")
        return XDist(dim=dim)
    for key in spec:
        if key not in _X_KEYS[kind]:
            check.fail(("x", key), f"does not apply to a {kind} distribution")
    if spec.get("dim", dim) != dim:
        check.fail(("x", "dim"), f"must equal the experts' input dimension {dim} (got {_shown(spec['dim'])})")
    if kind == "normal":
        return XDist("normal", dim, mean=check.number(spec.get("mean", 0.0), ("x", "mean")),
                     std=check.number(spec.get("std", 1.0), ("x", "std"), positive=True))
    low = check.number(spec.get("low", -1.0), ("x", "low"))
    high = check.number(spec.get("high", 1.0), ("x", "high"))
    if not low < high:
        check.fail(("x", "high"), f"must be greater than low (got low={low}, high={high})")
        return XDist(dim=dim)
    return XDist("uniform", dim, low, high)


def _shown(value: Any) -> str:
    """A value for a message: short, and never the thousands of digits of a huge integer."""
    if isinstance(value, int) and not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        return "an integer too large"
    text = repr(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def parse_truth(text: str, source: str = "<params>") -> Truth:
    """A validated model from YAML text (through the safe YAML layer: size, depth and alias
    limits); InputError lists every problem found."""
    if len(text) > MAX_FILE_BYTES:
        raise InputError(Diagnostic(source, None, None, f"file is larger than {MAX_FILE_BYTES} bytes"))
    return _truth_from(parse_yaml(text, source), source)


def load_truth(path: str | Path) -> Truth:
    """Read and validate a parameter file."""
    return _truth_from(read_yaml(path), str(path))


def _truth_from(root: yaml.Node, source: str) -> Truth:
    doc, marks = to_python(root, source)
    check = _Checker(source, marks)
    doc = check.mapping(doc, (), _TOP_KEYS)
    if check.problems and not doc:  # not a mapping: nothing below can be checked
        raise InputError(check.problems)
    cols, dim = _experts(check, doc)
    x = _xdist(check, doc, dim)
    top_k = check.integer(doc.get("top_k"), ("top_k",), 1, len(cols.get("b", [])) or 1)
    select_on = doc.get("select_on", "score")
    if select_on not in SELECT_ON:
        check.fail(("select_on",), f"must be one of {', '.join(SELECT_ON)} (got {_shown(select_on)})")
    name = doc.get("name", Path(source).stem)
    if check.problems:
        raise InputError(check.problems)
    params = MoEParams(top_k=top_k, select_on=select_on, **{key: np.array(v) for key, v in cols.items()})
    return Truth(str(name), params, x)


def truth_to_dict(truth: Truth) -> dict:
    """The parameter-file form of a model (plain Python types), the inverse of ``parse_truth``."""
    p, x = truth.params, truth.x
    xspec = ({"dist": "uniform", "low": x.low, "high": x.high} if x.kind == "uniform"
             else {"dist": "normal", "mean": x.mean, "std": x.std})
    experts = [{"beta0": float(p.beta0[i]), "beta1": p.beta1[i].tolist(), "a": p.a[i].tolist(),
                "b": float(p.b[i]), "sigma": float(p.sigma[i])} for i in range(p.n_experts)]
    return {"name": truth.name, "top_k": int(p.top_k), "select_on": p.select_on, "x": xspec, "experts": experts}


def dump_truth(truth: Truth) -> str:
    """YAML text of a model, loadable by ``load_truth``."""
    return yaml.safe_dump(truth_to_dict(truth), sort_keys=False, default_flow_style=None)
