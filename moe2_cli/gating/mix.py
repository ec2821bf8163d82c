"""A stated traffic mix, and F reweighted to it.

F weighs queries by their category's traffic share, so its estimate and interval describe
queries drawn like the scored ones. Traffic with another mix of tasks (tags) or categories has
another F: a :class:`Mix` gives target shares per tag or per category, and F is reweighted so
that every such stratum carries its target share, split evenly over its scored queries (the
importance weight target share / share in the training outcomes; the bootstrap resamples
within the same strata, so the interval is the reweighted one). A stratum of the mix that no
scored query has cannot be estimated: it is named in a note, and the shares are renormalised
over the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moe2_cli.errors import Diagnostic, InputError, UsageError
from moe2_cli.gating.ensemble import share_weights
from moe2_cli.outcomes import Outcomes
from moe2_cli.problem import Instance
from moe2_cli.yamlio import read_yaml, to_python

MIX_KEYS = ("categories", "tags")
_MAPPING_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Mix:
    """Target shares per category and per tag (either may be None); with tags, they decide."""

    categories: dict[str, float] | None
    tags: dict[str, float] | None
    source: str
    # Queries per category and per tag when the mix is taken from a file of queries: a finite
    # sample of the mix, whose own F scatters around the mix's F.
    counts: dict[str, dict[str, int]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "categories": self.categories, "tags": self.tags}


@dataclass(frozen=True, eq=False)
class Weighting:
    """Each scored query's stratum and each stratum's share (they sum to 1), what F and its
    bootstrap weigh by; ``record`` is the JSON ``mix`` key (None without a mix)."""

    strata: np.ndarray
    shares: np.ndarray
    notes: tuple[str, ...] = ()
    record: dict[str, Any] | None = None
    sample_counts: np.ndarray | None = None  # queries per stratum in the mix's own file, if it has one


def by_category(table: Outcomes, shares) -> Weighting:
    """F's own weighting: the instance's category traffic shares."""
    return Weighting(strata=np.asarray(table.category), shares=np.asarray(shares, dtype=float))


def first_tags(table: Outcomes) -> list[str | None]:
    """Each query's tag for the mix: its first (None when it has none)."""
    return [t[0] if t else None for t in table.tags] if table.tags is not None else [None] * table.n_queries


def mix_of(table: Outcomes, instance: Instance, source: str) -> Mix:
    """The shares F gives ``table``'s queries under the instance's category traffic shares:
    each category its share (over the categories present), each tag its part of its category."""
    unknown = sorted(set(table.categories[c] for c in np.unique(table.category)) - set(instance.categories))
    if unknown:
        raise InputError(Diagnostic(source, None, None, f"category {unknown[0]!r} is not a category of "
                                    f"{instance.name!r} (it has: {', '.join(instance.categories)})"))
    shares = [instance.shares[instance.categories.index(name)] for name in table.categories]
    weights = share_weights(table.category, np.asarray(shares, dtype=float))
    labels = [table.categories[c] for c in table.category]
    categories = _sums(labels, weights)
    tags = _sums(first_tags(table), weights) if table.tags is not None else None
    counts = {"categories": _counts(labels), "tags": _counts(first_tags(table)) if tags else {}}
    return Mix(categories=categories, tags=tags or None, source=source, counts=counts)


def _counts(labels: list[str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for label in labels:
        if label is not None:
            out[label] = out.get(label, 0) + 1
    return out


def _sums(labels: list[str | None], weights: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, w in zip(labels, weights.tolist()):
        if label is not None:
            out[label] = out.get(label, 0.0) + w
    return {k: out[k] for k in sorted(out)}


def read_mix(mix: str | Path | Mapping, instance: Instance, read_table) -> Mix:
    """A mix from a mapping ``{categories: {...}, tags: {...}}`` (UsageError when malformed), a
    YAML/JSON file holding one, or an outcome file (read by ``read_table``) as :func:`mix_of`
    gives it."""
    if isinstance(mix, Mapping):
        return mapping_mix(dict(mix), "mix", lambda where, message: UsageError(f"is not a valid mix: {message}", "mix"))
    path = Path(mix)
    if path.suffix.lower() in _MAPPING_SUFFIXES:
        value, marks = to_python(read_yaml(path), str(path))
        if isinstance(value, dict):
            def located(where: tuple, message: str) -> Exception:
                line, col = marks.get(where, (None, None))
                return InputError(Diagnostic(str(path), line, col, message))
            return mapping_mix(value, str(path), located)
    return mix_of(read_table(path), instance, str(path))


def mapping_mix(value: dict, source: str, fail) -> Mix:
    """The mix a mapping states; ``fail(key path, message)`` makes the error to raise."""
    extra = [k for k in value if k not in MIX_KEYS]
    if extra:
        raise fail((extra[0],), f"unknown key {extra[0]!r} in a mix (known: {', '.join(MIX_KEYS)})")
    if not value:
        raise fail((), "a mix needs categories or tags: {categories: {NAME: SHARE}, tags: {NAME: SHARE}}")
    parts: dict[str, dict[str, float] | None] = {}
    for key in MIX_KEYS:
        shares = value.get(key)
        if shares is None:
            parts[key] = None
            continue
        if not isinstance(shares, dict) or not shares:
            raise fail((key,), f"{key} must map names to shares (got {type(shares).__name__})")
        for name, share in shares.items():
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) \
                    or share < 0:
                raise fail((key, name), f"share of {key[:-1] if key == 'tags' else 'category'} {name!r} must be "
                                        f"a finite number >= 0 (got {share!r})")
        total = float(sum(shares.values()))
        if total <= 0:
            raise fail((key,), f"{key} shares must not all be 0")
        parts[key] = {str(k): float(v) / total for k, v in shares.items()}
    return Mix(categories=parts["categories"], tags=parts["tags"], source=source)


def weighting(mix: Mix | None, table: Outcomes, instance_shares) -> Weighting:
    """How F weighs ``table``'s (scored, training) queries for ``mix`` (F's own weighting for None)."""
    if mix is None:
        return by_category(table, instance_shares)
    kind = "tag" if mix.tags else "category"
    wanted = mix.tags if mix.tags else mix.categories
    assert wanted is not None
    if kind == "tag":
        if table.tags is None:
            raise UsageError(f"gives tag shares but the outcomes ({table.source}) carry no tags: give category "
                             f"shares instead", "mix")
        labels = first_tags(table)
    else:
        labels = [table.categories[c] for c in table.category]
    seen = sorted({label for label in labels if label is not None})
    unseen = {k: v for k, v in wanted.items() if k not in seen and v > 0}
    covered = sum(v for k, v in wanted.items() if k in seen)
    if covered <= 0:
        raise UsageError(f"has no {kind} with a positive share that the training outcomes have (they have: "
                         f"{', '.join(seen)})", "mix")
    index = {name: i for i, name in enumerate(seen)}
    strata = np.array([index.get(label, len(seen)) if label is not None else len(seen) for label in labels])
    shares = np.array([wanted.get(name, 0.0) / covered for name in seen] + [0.0])
    notes = []
    if unseen:
        notes.append(f"mix: {kind}s {', '.join(sorted(unseen))} ({100 * sum(unseen.values()):.1f}% of the mix) "
                     f"have no training queries, so the estimate cannot cover them; F is reweighted over the other "
                     f"{kind}s")
    untagged = sum(label is None for label in labels)
    if untagged:
        notes.append(f"mix: {untagged} training queries without a tag carry no weight")
    record = {**mix.as_dict(), "by": kind, "shares": {name: float(s) for name, s in zip(seen, shares.tolist())},
              "unseen": dict(sorted(unseen.items())), "sample": None}
    sample = None if mix.counts is None else mix.counts["tags" if kind == "tag" else "categories"]
    counts = None if sample is None else np.array([sample.get(name, 0) for name in seen] + [0])
    return Weighting(strata=strata, shares=shares, notes=tuple(notes), record=record, sample_counts=counts)


def coverage_note(mix: dict[str, Any] | None) -> str:
    """What an interval covers, said plainly."""
    if mix is None:
        return "the interval covers queries drawn like those it was estimated on; another task mix: --mix"
    note = (f"the interval covers queries drawn like those it was estimated on, reweighted to the mix of "
            f"{mix['source']} (by {mix['by']}); tasks the mix leaves out are not covered")
    if mix.get("sample") is not None:
        note += (f"; F on that file's own {mix['sample']['queries']} queries, a finite sample of the mix, has the "
                 f"wider sample interval (mix.sample in JSON)")
    return note


def sample_se(values: np.ndarray, weighting: Weighting) -> float | None:
    """The standard error of F over the mix's own file of queries, a finite sample of the mix:
    each stratum's mean over its queries there scatters with the spread of the training
    queries' ``values`` (per-query values of F for one selection) in that stratum. None
    unless the mix came from a file."""
    if weighting.sample_counts is None:
        return None
    variance = 0.0
    for s, (share, n) in enumerate(zip(weighting.shares.tolist(), weighting.sample_counts.tolist())):
        inside = values[weighting.strata == s]
        if share > 0 and n > 0 and inside.size >= 2:
            variance += share ** 2 * float(inside.var(ddof=1)) / n
    return math.sqrt(variance)
