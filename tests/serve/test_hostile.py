"""Hostile bodies and headers against a live proxy: never a 500, a reset or a hang (the same
fuzzer runs 10,000 examples from ``benchmarks/fuzz.py --reader serve``)."""

from __future__ import annotations

from tests.fuzz_serve import describe_serve, fuzz_serve


def test_hostile_requests_get_200_4xx_or_503_with_openai_errors(base_plan, tmp_path):
    report = fuzz_serve("serve", 200, seed=0, plan=base_plan, directory=tmp_path)
    assert report.examples == 200
    assert report.clean, describe_serve("serve", report) + "\n" + "\n".join(report.failures)
    assert 200 in report.statuses and 400 in report.statuses, "both honest and refused requests were sent"
