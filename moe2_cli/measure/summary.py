"""From logged requests to per-expert, per-category numbers, and which experts are kept.

Latency is a quantile over the successful requests (a worst-case flavour, because moe2's
constraints are worst cases); energy is the mean over the successful requests, less idle power
times the request's own time when asked; accuracy is the mean score over every prompt, a
failed request scoring 0. Failures are counted by kind (``reasons``); answers that are empty once
reasoning and whitespace are stripped are scored like any other, and counted apart (``empty``),
because an expert that answers nothing quickly looks cheap. An expert whose failures
pass the allowed rate, or with no successful request in some category, gets no profile entry
and is reported instead.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from moe2_cli.measure.runlog import RequestRecord
from moe2_cli.measure.scorers import strip_reasoning

EMPTY_WARN_RATE = 0.10  # past this share of empty answers an expert is flagged


@dataclass(frozen=True)
class CategoryStats:
    requests: int
    failures: int
    latency_p50_s: float | None
    latency_p90_s: float | None
    latency_s: float | None  # at the chosen quantile
    ttft_p50_s: float | None
    energy_j: float | None  # mean per successful request
    accuracy: float
    prompt_tokens: float | None  # mean, from usage
    completion_tokens: float | None
    reasons: dict[str, int] = field(default_factory=dict)  # failures by kind
    empty: int = 0  # completions with no answer text


@dataclass(frozen=True)
class ExpertSummary:
    server: str
    llm: str
    model: str
    categories: dict[str, CategoryStats]
    excluded: str | None  # why the expert gets no profile entry, or None

    @property
    def failures(self) -> int:
        return sum(c.failures for c in self.categories.values())

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self.categories.values())

    @property
    def reasons(self) -> dict[str, int]:
        return _total_reasons(self.categories)

    @property
    def empty(self) -> int:
        return sum(c.empty for c in self.categories.values())

    @property
    def empty_warning(self) -> str | None:
        """Why the expert's answers deserve a look, when more than EMPTY_WARN_RATE of them are empty."""
        if not self.requests or self.empty <= EMPTY_WARN_RATE * self.requests:
            return None
        return (f"{self.empty} of {self.requests} answers are empty ({100 * self.empty / self.requests:.0f}%, more "
                f"than {100 * EMPTY_WARN_RATE:g}%): they score 0 but still count as cheap, fast requests")

    @property
    def token_counts(self) -> bool:
        """Whether the server reported token usage for any of this expert's requests."""
        return any(c.completion_tokens is not None for c in self.categories.values())


def _total_reasons(stats: dict[str, CategoryStats]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in stats.values():
        total.update(c.reasons)
    return dict(sorted(total.items()))


def allowed_failures(rate: float, prompts: int) -> int:
    """Failed requests an expert may have, out of ``prompts``, at a failure rate of ``rate``."""
    return math.floor(rate * prompts + 1e-9)  # 5 % of 20 is 1, not 0.99999


def describe_reasons(reasons: dict[str, int]) -> str:
    """``not_sse 3, timeout 1``."""
    return ", ".join(f"{kind} {count}" for kind, count in reasons.items())


def is_empty(answer: str) -> bool:
    """No answer text once reasoning blocks and whitespace are stripped."""
    return not strip_reasoning(answer).strip()


def _quantile(values: Sequence[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if len(values) else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def category_stats(records: Sequence[RequestRecord], quantile: float, idle_w: float | None) -> CategoryStats:
    ok = [r for r in records if r.ok]
    latencies = [r.latency_s for r in ok]
    energies = [(r.energy_j or 0.0) - (idle_w * (r.busy_s or 0.0) if idle_w is not None else 0.0) for r in ok]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    return CategoryStats(
        requests=len(records), failures=len(records) - len(ok),
        latency_p50_s=_quantile(latencies, 0.5), latency_p90_s=_quantile(latencies, 0.9),
        latency_s=_quantile(latencies, quantile), ttft_p50_s=_quantile(ttfts, 0.5), energy_j=_mean(energies),
        accuracy=float(np.mean([r.score for r in records])) if records else 0.0,
        prompt_tokens=_mean([r.prompt_tokens for r in ok if r.prompt_tokens is not None]),
        completion_tokens=_mean([r.completion_tokens for r in ok if r.completion_tokens is not None]),
        reasons=dict(sorted(Counter(r.reason or "error" for r in records if not r.ok).items())),
        empty=sum(is_empty(r.answer) for r in ok),
    )


def summarise(server: str, llm: str, model: str, records: Iterable[RequestRecord], categories: Sequence[str], *,
              quantile: float, max_failure_rate: float, prompts: int, idle_w: float | None) -> ExpertSummary:
    """One expert's numbers over ``prompts`` prompts; ``idle_w`` is subtracted from energy when given."""
    by_category: dict[str, list[RequestRecord]] = {c: [] for c in categories}
    for record in records:
        by_category[record.category].append(record)
    stats = {c: category_stats(rs, quantile, idle_w) for c, rs in by_category.items()}
    return ExpertSummary(server=server, llm=llm, model=model, categories=stats,
                         excluded=_excluded(stats, max_failure_rate, prompts))


def _excluded(stats: dict[str, CategoryStats], rate: float, prompts: int) -> str | None:
    failures = sum(c.failures for c in stats.values())
    allowed = allowed_failures(rate, prompts)
    if failures > allowed:
        return (f"{failures} of {prompts} requests failed ({describe_reasons(_total_reasons(stats))}), more than "
                f"the allowed failure rate of {100 * rate:g}% permits ({allowed})")
    for category, c in stats.items():
        if c.latency_s is None:
            return f"no successful request in category {category!r}"
        if c.energy_j is None or c.energy_j <= 0:
            return f"mean energy in category {category!r} is not positive (got {c.energy_j}); check the power source"
    return None
