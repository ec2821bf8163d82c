"""From logged requests to profile numbers: quantiles, idle subtraction, failures, exclusion."""

from __future__ import annotations

import pytest

from moe2_cli.measure.runlog import RequestRecord
from moe2_cli.measure.summary import summarise


def record(prompt: str, category: str, *, ok=True, score=1.0, latency=1.0, energy=10.0, busy=1.0) -> RequestRecord:
    return RequestRecord(server="s", llm="m", model="m", prompt_id=prompt, category=category, prompt_digest="d",
                         ok=ok, score=score if ok else 0.0, answer="", error=None if ok else "HTTP 500",
                         started_at=0.0, latency_s=latency, ttft_s=latency / 2, energy_j=energy if ok else None,
                         busy_s=busy if ok else None, prompt_tokens=10, completion_tokens=5, attempts=1)


def test_quantile_mean_energy_idle_subtraction_and_failures():
    records = [record(f"p{i}", "mcq", latency=float(i), energy=10.0 * i, busy=float(i)) for i in range(1, 11)]
    records.append(record("bad", "mcq", ok=False))
    stats = summarise("s", "m", "m", records, ["mcq"], quantile=0.9, max_failures=1, idle_w=2.0)
    mcq = stats.categories["mcq"]
    assert mcq.latency_s == pytest.approx(9.1) and mcq.latency_p50_s == pytest.approx(5.5)
    assert mcq.energy_j == pytest.approx(55.0 - 2.0 * 5.5)  # idle power x the request's own time, off
    assert mcq.accuracy == pytest.approx(10 / 11) and (mcq.requests, mcq.failures) == (11, 1)
    assert stats.excluded is None


@pytest.mark.parametrize("records, reason", [
    ([record("a", "mcq"), record("b", "mcq", ok=False), record("c", "math", ok=False)], "2 failed requests"),
    ([record("a", "mcq"), record("c", "math", ok=False)], "no successful request in category 'math'"),
    ([record("a", "mcq", energy=1.0), record("c", "math")], "mean energy in category 'mcq' is not positive"),
])
def test_experts_without_usable_numbers_are_excluded(records, reason):
    stats = summarise("s", "m", "m", records, ["mcq", "math"], quantile=0.9, max_failures=1, idle_w=1.0)
    assert stats.excluded.startswith(reason)
