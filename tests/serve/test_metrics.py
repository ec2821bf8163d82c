"""Prometheus text: counters, cumulative histogram buckets, escaped labels."""

from __future__ import annotations

from moe2_cli.serve.metrics import Family, Metrics


def test_histogram_buckets_are_cumulative_and_inclusive():
    family = Family("t_seconds", "help", "histogram", buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        family.observe((("c", "x"),), value)
    lines = family.render()
    assert 't_seconds_bucket{c="x",le="0.1"} 2' in lines  # 0.1 itself is <= 0.1
    assert 't_seconds_bucket{c="x",le="1"} 3' in lines
    assert 't_seconds_bucket{c="x",le="+Inf"} 4' in lines
    assert 't_seconds_count{c="x"} 4' in lines
    assert 't_seconds_sum{c="x"} 3.65' in lines


def test_labels_are_escaped_and_every_family_is_typed():
    metrics = Metrics()
    metrics.expert_calls.inc((("expert", 'a"b\\c'),))
    text = metrics.render()
    assert 'moe2_expert_calls_total{expert="a\\"b\\\\c"} 1' in text
    for name in ("moe2_requests_total", "moe2_expert_failures_total", "moe2_request_latency_seconds",
                 "moe2_estimated_energy_joules_total", "moe2_budget_overruns_total"):
        assert f"# TYPE {name} " in text
    assert "moe2_requests_in_flight 0" in text
