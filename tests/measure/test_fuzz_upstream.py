"""moe2 measure against hostile upstreams: never an ok record for a reply that is not a
completion, never a traceback, never a file moe2 validate refuses (the same fuzzer runs 10,000
examples from ``benchmarks/fuzz.py --reader measure-upstream``)."""

from __future__ import annotations

from tests.fuzz_measure import describe_upstream, fuzz_upstream

EXAMPLES = 40


def test_hostile_replies_are_failures_and_completions_are_measured():
    report = fuzz_upstream("measure-upstream", EXAMPLES, seed=0)
    assert report.examples == EXAMPLES
    assert report.clean, describe_upstream("measure-upstream", report) + "\n" + "\n".join(report.failures)
    assert set(report.exit_codes) == {0, 1}, "both completions and failures were sent"
    assert 0 < report.completions < EXAMPLES
