"""From logged requests to profile numbers: quantiles, idle subtraction, failures, exclusion."""

from __future__ import annotations

import pytest

from moe2_cli.measure.runlog import RequestRecord
from moe2_cli.measure.summary import allowed_failures, summarise


def record(prompt: str, category: str, *, ok=True, score=1.0, latency=1.0, energy=10.0, busy=1.0,
           reason="http") -> RequestRecord:
    return RequestRecord(server="s", llm="m", model="m", prompt_id=prompt, category=category, prompt_digest="d",
                         ok=ok, score=score if ok else 0.0, answer="", error=None if ok else "HTTP 500",
                         started_at=0.0, latency_s=latency, ttft_s=latency / 2, energy_j=energy if ok else None,
                         busy_s=busy if ok else None, prompt_tokens=10, completion_tokens=5, attempts=1,
                         reason=None if ok else reason)


def test_quantile_mean_energy_idle_subtraction_and_failures():
    records = [record(f"p{i}", "mcq", latency=float(i), energy=10.0 * i, busy=float(i)) for i in range(1, 11)]
    records.append(record("bad", "mcq", ok=False))
    stats = summarise("s", "m", "m", records, ["mcq"], quantile=0.9, max_failure_rate=0.1, prompts=11, idle_w=2.0)
    mcq = stats.categories["mcq"]
    assert mcq.latency_s == pytest.approx(9.1) and mcq.latency_p50_s == pytest.approx(5.5)
    assert mcq.energy_j == pytest.approx(55.0 - 2.0 * 5.5)  # idle power x the request's own time, off
    assert mcq.accuracy == pytest.approx(10 / 11) and (mcq.requests, mcq.failures) == (11, 1)
    assert stats.excluded is None and stats.reasons == {"http": 1}


@pytest.mark.parametrize("records, reason", [
    ([record("a", "mcq"), record("b", "mcq", ok=False, reason="not_sse"), record("c", "math", ok=False)],
     "2 of 3 requests failed (http 1, not_sse 1), more than the allowed failure rate of 50% permits (1)"),
    ([record("a", "mcq"), record("c", "math", ok=False)], "no successful request in category 'math'"),
    ([record("a", "mcq", energy=1.0), record("c", "math")], "mean energy in category 'mcq' is not positive"),
])
def test_experts_without_usable_numbers_are_excluded(records, reason):
    stats = summarise("s", "m", "m", records, ["mcq", "math"], quantile=0.9, max_failure_rate=0.5,
                      prompts=len(records), idle_w=1.0)
    assert stats.excluded.startswith(reason)


@pytest.mark.parametrize("rate, prompts, allowed", [(0.05, 20, 1), (0.05, 19, 0), (0.05, 160, 8), (0.0, 10, 0),
                                                    (1.0, 7, 7), (0.1, 30, 3)])
def test_the_failure_rate_allows_whole_failures(rate, prompts, allowed):
    assert allowed_failures(rate, prompts) == allowed
