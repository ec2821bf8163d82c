"""The instance: experts, categories, resource arrays, budgets, and vectorised resource use.

Every solver sees resources through :meth:`Instance.usage` and :meth:`Budgets.feasible`, in
integer units fixed once at construction, so all of them agree on what "feasible" means.
Float data is scaled up (usage rounded up, budgets rounded down): a selection that is feasible
in integer units is feasible in the original units too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from moe2_cli.errors import UsageError

if TYPE_CHECKING:  # objective.py and mean_cost.py build on this module: named for type checking only
    from moe2_cli.mean_cost import Routing
    from moe2_cli.objective import Objective

# One energy unit is a millijoule, one latency unit a microsecond.
ENERGY_UNITS_PER_J = 1_000
LATENCY_UNITS_PER_S = 1_000_000
# The largest energy (J) and latency (s) an input may give for one expert, server or budget.
# With at most MAX_EXPERTS experts, every sum of usage in integer units then stays far below
# UNLIMITED, and UNLIMITED far below the int64 limit: no sum can wrap.
MAX_ENERGY_J = 1e9
MAX_LATENCY_S = 1e6
# A budget of "no limit" in integer units; far above any sum of real usage.
UNLIMITED = np.iinfo(np.int64).max // 4
# Tolerance so that 0.1 J scales to 100 mJ and not 101 after float round-off.
_ROUNDING_SLACK = 1e-9
MAX_EXPERTS = 256
# A selection is a Python int with one bit per expert. Arrays of masks are int64 while they fit a
# machine word (fast vectorised paths); above WORD_EXPERTS experts they hold Python ints (dtype
# object), which every mask helper below accepts, so no path needs to know which one it has.
WORD_EXPERTS = 62
_CHUNK = 8192


def scale_up(values: npt.ArrayLike, per_unit: int) -> np.ndarray:
    """Usage to integer units, rounded up."""
    scaled = np.asarray(values, dtype=float) * per_unit
    units: np.ndarray = np.ceil(scaled - _ROUNDING_SLACK * np.maximum(1.0, np.abs(scaled))).astype(np.int64)
    return units


def scale_down(value: float, per_unit: int) -> int:
    """A budget to integer units, rounded down; a budget no usage can reach is UNLIMITED."""
    scaled = float(value) * per_unit
    if not scaled < UNLIMITED:  # also NaN and +inf: never an int64 that could wrap
        return UNLIMITED if scaled == scaled else 0
    return int(math.floor(scaled + _ROUNDING_SLACK * max(1.0, abs(scaled))))


def _checked_range(name: str, values: np.ndarray, maximum: float) -> None:
    """Refuse costs that could overflow integer units (inputs are bounded before they get here)."""
    if values.size and not (np.all(np.isfinite(values)) and values.min() >= 0 and values.max() <= maximum):
        raise ValueError(f"{name} must lie in [0, {maximum:g}]")


# ---------------------------------------------------------------- bit masks


def members(mask: int) -> list[int]:
    """Indices of the set bits of ``mask``, ascending."""
    out, i = [], 0
    mask = int(mask)
    while mask:
        if mask & 1:
            out.append(i)
        mask >>= 1
        i += 1
    return out


def mask_of(indices: Iterable[int]) -> int:
    m = 0
    for i in indices:
        m |= 1 << int(i)
    return m


_to_int = np.frompyfunc(int, 1, 1)


def as_masks(masks: object, n: int) -> np.ndarray:
    """Masks over ``n`` experts as an array (shape kept): int64 up to WORD_EXPERTS experts, else
    dtype object holding Python ints only (a numpy int64 inside would overflow next to a wide mask)."""
    if n <= WORD_EXPERTS:
        return np.asarray(masks, dtype=np.int64)
    array = np.asarray(masks, dtype=object)
    return np.asarray(_to_int(array), dtype=object).reshape(array.shape)


def bits_of(indices: object, n: int) -> np.ndarray:
    """The one-expert masks 1 << i of ``indices``, as an array of masks over ``n`` experts."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if n <= WORD_EXPERTS:
        singles: np.ndarray = np.left_shift(np.int64(1), idx)
        return singles
    return as_masks([1 << i for i in idx.tolist()], n)


def mask_bytes(masks: object, n: int) -> np.ndarray:
    """(B, ceil(n / 8)) uint8: the bytes of each mask, least significant first."""
    flat = as_masks(masks, n).reshape(-1)
    width = max(1, (n + 7) // 8)
    if flat.dtype != object:
        shifts = 8 * np.arange(width, dtype=np.int64)
        return ((flat[:, None] >> shifts[None, :]) & 255).astype(np.uint8)
    raw = b"".join(m.to_bytes(width, "little") for m in flat.tolist())
    return np.frombuffer(raw, dtype=np.uint8).reshape(flat.size, width)


def masks_to_bool(masks: npt.ArrayLike, n: int) -> np.ndarray:
    """(B,) bit masks to a (B, n) boolean matrix."""
    if n > WORD_EXPERTS:
        unpacked = np.unpackbits(mask_bytes(masks, n), axis=1, count=n, bitorder="little")
        return unpacked.astype(bool)
    flat = np.asarray(masks, dtype=np.int64).reshape(-1)
    bits = np.arange(n, dtype=np.int64)
    chosen: np.ndarray = ((flat[:, None] >> bits[None, :]) & 1).astype(bool)
    return chosen


def bool_to_masks(rows: np.ndarray) -> np.ndarray:
    """(B, n) boolean matrix to (B,) bit masks (as :func:`as_masks` holds them)."""
    rows = np.asarray(rows, dtype=bool)
    n = rows.shape[1]
    if n > WORD_EXPERTS:
        packed = np.packbits(rows, axis=1, bitorder="little")
        return as_masks([int.from_bytes(row.tobytes(), "little") for row in packed], n)
    weights = np.left_shift(np.int64(1), np.arange(n, dtype=np.int64))
    masks: np.ndarray = (rows.astype(np.int64) * weights).sum(axis=1)
    return masks


def popcount(masks: npt.ArrayLike) -> np.ndarray:
    array = np.asarray(masks)
    if array.dtype == object:
        return np.array([int(m).bit_count() for m in array.reshape(-1)], dtype=np.int64).reshape(array.shape)
    array = array.astype(np.int64)
    counts: np.ndarray = np.bitwise_count(array).astype(np.int64) if hasattr(np, "bitwise_count") else np.array(
        [bin(int(m)).count("1") for m in array.reshape(-1)], dtype=np.int64
    ).reshape(array.shape)
    return counts


def top_k_sum(values: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Sum of the k largest entries along ``axis`` (all of them when k >= that length)."""
    size = values.shape[axis]
    total: np.ndarray
    if k >= size:
        total = values.sum(axis=axis)
        return total
    part = -np.partition(-values, k - 1, axis=axis)
    total = np.take(part, np.arange(k), axis=axis).sum(axis=axis)
    return total


# ---------------------------------------------------------------- instance


@dataclass(frozen=True)
class Usage:
    """Worst-case resource use of a batch of selections, in integer units, shape (B, C)."""

    energy: np.ndarray
    latency: np.ndarray

    @property
    def energy_j(self) -> np.ndarray:
        return self.energy / ENERGY_UNITS_PER_J

    @property
    def latency_s(self) -> np.ndarray:
        return self.latency / LATENCY_UNITS_PER_S


@dataclass(frozen=True, eq=False)
class Instance:
    """N experts (one LLM on one server) and C query categories, as immutable arrays.

    ``latency_s``, ``energy_j`` and ``accuracy`` have shape (N, C). ``expert_server`` maps each
    expert to an index into ``server_names``; ``transmission_s`` has one entry per server.
    """

    name: str
    expert_ids: tuple[str, ...]
    expert_llms: tuple[str, ...]
    expert_server: np.ndarray
    server_names: tuple[str, ...]
    transmission_s: np.ndarray
    categories: tuple[str, ...]
    shares: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    accuracy: np.ndarray
    top_k: int
    aggregation_s: float
    energy_units: np.ndarray = field(init=False, repr=False)
    latency_units: np.ndarray = field(init=False, repr=False)
    transmission_units: np.ndarray = field(init=False, repr=False)
    aggregation_units: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.expert_ids)
        if not 0 < n <= MAX_EXPERTS:
            raise ValueError(f"an instance needs 1..{MAX_EXPERTS} experts (got {n})")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 (got {self.top_k})")
        for name in ("latency_s", "energy_j", "accuracy"):
            arr = np.array(getattr(self, name), dtype=float)
            if arr.shape != (n, len(self.categories)):
                raise ValueError(f"{name} must have shape (experts, categories)")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        for name in ("expert_server", "transmission_s", "shares"):
            arr = np.array(getattr(self, name))
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        _checked_range("energy_j", self.energy_j, MAX_ENERGY_J)
        for name in ("latency_s", "transmission_s"):
            _checked_range(name, getattr(self, name), MAX_LATENCY_S)
        _checked_range("aggregation_s", np.array([self.aggregation_s], dtype=float), MAX_LATENCY_S)
        derived = {
            "energy_units": scale_up(self.energy_j, ENERGY_UNITS_PER_J),
            "latency_units": scale_up(self.latency_s, LATENCY_UNITS_PER_S),
            "transmission_units": scale_up(self.transmission_s, LATENCY_UNITS_PER_S),
        }
        for name, arr in derived.items():
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "aggregation_units", int(scale_up(self.aggregation_s, LATENCY_UNITS_PER_S)))

    @property
    def n_experts(self) -> int:
        return len(self.expert_ids)

    @property
    def full_mask(self) -> int:
        return (1 << self.n_experts) - 1

    def server_groups(self) -> list[np.ndarray]:
        """Expert indices of each server, in server order."""
        return [np.flatnonzero(self.expert_server == s) for s in range(len(self.server_names))]

    def with_top_k(self, top_k: int) -> Instance:
        """This instance with another k; UsageError unless 1 <= k <= N (more k than experts
        would only ever mean all of them, so it is a mistake, not a request)."""
        if not 1 <= top_k <= self.n_experts:
            raise UsageError(f"must be between 1 and {self.n_experts}, the scenario's number of experts "
                             f"(got {top_k})", "top_k")
        return Instance(
            name=self.name, expert_ids=self.expert_ids, expert_llms=self.expert_llms,
            expert_server=self.expert_server, server_names=self.server_names,
            transmission_s=self.transmission_s, categories=self.categories, shares=self.shares,
            latency_s=self.latency_s, energy_j=self.energy_j, accuracy=self.accuracy,
            top_k=top_k, aggregation_s=self.aggregation_s,
        )

    def usage(self, masks: npt.ArrayLike) -> Usage:
        """Worst-case energy and latency per category for a batch of bit masks.

        Energy: the sum of the k largest energies in S. Latency: servers run in parallel and
        the experts on one server one after another, so the worst case sends all k queries to
        the slowest server: max over used servers of transmission + k largest latencies there,
        plus aggregation. The empty selection uses nothing.
        """
        flat = as_masks(masks, self.n_experts).reshape(-1)
        energy = np.empty((flat.size, len(self.categories)), dtype=np.int64)
        latency = np.empty_like(energy)
        for start in range(0, flat.size, _CHUNK):
            chunk = slice(start, start + _CHUNK)
            energy[chunk], latency[chunk] = self._usage_chunk(flat[chunk])
        return Usage(energy=energy, latency=latency)

    def _usage_chunk(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        chosen = masks_to_bool(masks, self.n_experts)[:, :, None]
        energy = top_k_sum(np.where(chosen, self.energy_units[None], 0), self.top_k, axis=1)
        latency = np.zeros_like(energy)
        groups = self.server_groups()
        # Only servers some selection uses: on a wide fleet a few selections use few of them.
        for s in np.unique(self.expert_server[chosen[:, :, 0].any(axis=0)]).tolist():
            group = groups[s]
            on_server = chosen[:, group]
            work = top_k_sum(np.where(on_server, self.latency_units[group][None], 0), self.top_k, axis=1)
            used = on_server.any(axis=1)
            latency = np.maximum(latency, np.where(used, self.transmission_units[s] + work, 0))
        any_used = np.asarray(chosen[:, :, 0].any(axis=1))
        latency = np.where(any_used[:, None], latency + self.aggregation_units, 0)
        return energy, latency


# ---------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budgets:
    """Per-category energy (J) and latency (s) caps; ``None`` means no cap. ``energy_j`` and
    ``latency_s`` cap the worst case, ``energy_mean_j`` and ``latency_mean_s`` (empty: none)
    the mean per query over the category's evaluation queries (moe2_cli.mean_cost)."""

    categories: tuple[str, ...]
    energy_j: tuple[float | None, ...]
    latency_s: tuple[float | None, ...]
    energy_mean_j: tuple[float | None, ...] = ()
    latency_mean_s: tuple[float | None, ...] = ()

    @classmethod
    def build(cls, categories: Iterable[str], energy: float | None = None, latency: float | None = None,
              energy_by_cat: Mapping[str, float | None] | None = None,
              latency_by_cat: Mapping[str, float | None] | None = None) -> Budgets:
        """Global caps, overridden per category where given."""
        energy_by_cat, latency_by_cat = energy_by_cat or {}, latency_by_cat or {}
        categories = tuple(categories)
        return cls(
            categories=categories,
            energy_j=tuple(energy_by_cat.get(c, energy) for c in categories),
            latency_s=tuple(latency_by_cat.get(c, latency) for c in categories),
        )

    @property
    def energy_units(self) -> np.ndarray:
        return np.array([UNLIMITED if b is None else scale_down(b, ENERGY_UNITS_PER_J) for b in self.energy_j],
                        dtype=np.int64)

    @property
    def latency_units(self) -> np.ndarray:
        return np.array([UNLIMITED if b is None else scale_down(b, LATENCY_UNITS_PER_S) for b in self.latency_s],
                        dtype=np.int64)

    @property
    def energy_mean_units(self) -> np.ndarray:
        return _caps(self.energy_mean_j or (None,) * len(self.categories), ENERGY_UNITS_PER_J)

    @property
    def latency_mean_units(self) -> np.ndarray:
        return _caps(self.latency_mean_s or (None,) * len(self.categories), LATENCY_UNITS_PER_S)

    @property
    def has_mean(self) -> bool:
        """Whether a mean budget is set: the feasible selections are then no down-set."""
        return any(b is not None for b in self.energy_mean_j + self.latency_mean_s)

    def slack(self, usage: Usage) -> tuple[np.ndarray, np.ndarray]:
        """Integer slack of every (selection, category) for energy and latency; < 0 is a violation."""
        return self.energy_units[None] - usage.energy, self.latency_units[None] - usage.latency

    def feasible(self, usage: Usage) -> np.ndarray:
        energy_slack, latency_slack = self.slack(usage)
        energy_ok = np.asarray((energy_slack >= 0).all(axis=1))
        latency_ok = np.asarray((latency_slack >= 0).all(axis=1))
        return np.asarray(energy_ok & latency_ok)

    def as_dict(self) -> dict[str, dict[str, float | None]]:
        """The caps by category; the mean caps only when one is set."""
        out = {
            "energy_j": dict(zip(self.categories, self.energy_j)),
            "latency_s": dict(zip(self.categories, self.latency_s)),
        }
        if self.has_mean:
            none = (None,) * len(self.categories)
            out["energy_mean_j"] = dict(zip(self.categories, self.energy_mean_j or none))
            out["latency_mean_s"] = dict(zip(self.categories, self.latency_mean_s or none))
        return out


def _caps(caps: tuple[float | None, ...], per_unit: int) -> np.ndarray:
    return np.array([UNLIMITED if b is None else scale_down(b, per_unit) for b in caps], dtype=np.int64)


# ---------------------------------------------------------------- problem


@dataclass(frozen=True, eq=False)
class Problem:
    """What a solver gets: the instance, the budgets and the objective F. ``avoid``, when not
    empty, holds masks of experts of which a feasible selection must miss at least one whole
    mask (the best plan without some chosen LLM, say). Like the worst-case budgets it only ever
    rules out the supersets of what it rules out. ``routing`` is the router's ranking of the
    evaluation queries, which mean budgets need: with one, the feasible selections are no
    down-set (adding an expert can lower a mean cost)."""

    instance: Instance
    budgets: Budgets
    objective: Objective
    avoid: tuple[int, ...] = ()
    routing: Routing | None = None

    def __post_init__(self) -> None:
        if self.budgets.has_mean and self.routing is None:
            raise UsageError("mean budgets need the router's evaluation queries; this objective has none",
                             "budget")
        if self.budgets.has_mean and self.objective is not None and self.objective.envelope:
            raise UsageError("mean budgets cannot use the monotone envelope: a subset of a selection need "
                             "not meet them", "budget")
        if self.budgets.has_mean and self.instance.n_experts > WORD_EXPERTS:
            raise UsageError(f"mean budgets handle at most {WORD_EXPERTS} experts (got "
                             f"{self.instance.n_experts}); use worst-case budgets on larger fleets", "budget")

    @property
    def has_mean(self) -> bool:
        return self.budgets.has_mean

    def avoiding_one_of(self, masks: Iterable[int]) -> Problem:
        """The same problem in which a feasible selection holds no expert of at least one of ``masks``."""
        if self.avoid:
            raise ValueError("the problem already avoids a set of masks")
        return replace(self, avoid=tuple(int(m) for m in masks))

    def usage(self, masks: npt.ArrayLike) -> Usage:
        return self.instance.usage(masks)

    def feasible(self, masks: npt.ArrayLike) -> np.ndarray:
        """Boolean (B,) feasibility of bit masks; costs no objective evaluation."""
        masks = as_masks(masks, self.instance.n_experts)
        ok: np.ndarray = self.budgets.feasible(self.instance.usage(masks))
        if self.avoid:
            ok &= avoids_one(masks.reshape(-1), self.avoid)
        if self.has_mean:
            ok &= self.mean_ok(masks.reshape(-1))
        return ok

    def mean_ok(self, masks: np.ndarray) -> np.ndarray:
        """Boolean (B,): whether each mask's mean costs per query fit the mean budgets."""
        from moe2_cli.mean_cost import mean_use  # mean_cost builds on this module

        assert self.routing is not None  # __post_init__ requires it with mean budgets
        use = mean_use(self.routing, self.instance, masks)
        energy_cap, latency_cap = self.mean_caps()
        return np.asarray((use.energy <= energy_cap).all(axis=1) & (use.latency <= latency_cap).all(axis=1))

    def mean_caps(self) -> tuple[np.ndarray, np.ndarray]:
        """The mean budgets as caps on each category's summed cost over its queries (integer
        units; UNLIMITED where no mean budget is set)."""
        assert self.routing is not None
        counts = self.routing.counts(len(self.instance.categories))
        caps = []
        for units in (self.budgets.energy_mean_units, self.budgets.latency_mean_units):
            caps.append(np.where(units < UNLIMITED, units * counts, UNLIMITED))
        return caps[0], caps[1]

    def value(self, masks: npt.ArrayLike) -> np.ndarray:
        return self.objective(masks)


def avoids_one(masks: np.ndarray, avoid: tuple[int, ...]) -> np.ndarray:
    """Boolean (B,): whether each mask holds no expert of at least one mask of ``avoid``."""
    return np.asarray(((masks[:, None] & np.array(avoid, dtype=masks.dtype)[None, :]) == 0).any(axis=1))
