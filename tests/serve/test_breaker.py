"""The circuit breaker on an injected clock: it opens after failures in a row or a high failure
rate, lets one probe through after the cooldown, and closes or reopens on the probe's result."""

from __future__ import annotations

import pytest

from moe2_cli.serve.breaker import Breaker, BreakerSettings, State


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(**settings) -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker(["a", "b"], BreakerSettings(**settings), clock), clock


def test_opens_after_failures_in_a_row_and_a_success_resets_the_count():
    b, _ = breaker(failures=3)
    for _ in range(2):
        b.failed("a")
    b.succeeded("a")
    b.failed("a")
    b.failed("a")
    assert b.state("a") is State.CLOSED and b.allow("a")
    b.failed("a")
    assert b.state("a") is State.OPEN and not b.allow("a")
    assert b.state("b") is State.CLOSED


def test_opens_on_the_failure_rate_over_a_full_window():
    b, _ = breaker(failures=100, window=10, rate=0.5)
    for i in range(10):  # alternate: 5 of 10 fail, never 2 in a row
        (b.failed if i % 2 else b.succeeded)("a")
    assert b.state("a") is State.CLOSED, "a rate of exactly 0.5 is not over it"
    b.failed("a")
    b.failed("a")  # window now 6 failures of 10
    assert b.state("a") is State.OPEN


def test_after_the_cooldown_one_probe_then_closed_or_open_again():
    b, clock = breaker(failures=1, cooldown_s=30)
    b.failed("a")
    clock.now += 29.9
    assert b.state("a") is State.OPEN and not b.allow("a")
    clock.now += 0.1
    assert b.state("a") is State.HALF_OPEN
    assert b.allow("a") and not b.allow("a"), "one probe at a time"
    b.failed("a")
    assert b.state("a") is State.OPEN and b.retry_after() == 0.0, "b is still closed"
    clock.now += 30
    assert b.allow("a")
    b.succeeded("a")
    assert b.state("a") is State.CLOSED and b.allow("a") and b.allow("a")


def test_an_abandoned_probe_frees_the_slot():
    b, clock = breaker(failures=1, cooldown_s=5)
    b.failed("a")
    clock.now += 5
    assert b.allow("a") and not b.allow("a")
    b.abandoned("a")
    assert b.allow("a")


def test_all_open_and_retry_after():
    b, clock = breaker(failures=1, cooldown_s=10)
    b.failed("a")
    assert not b.all_open()
    clock.now += 4
    b.failed("b")
    assert b.all_open() and b.retry_after() == pytest.approx(6.0)
    clock.now += 6
    assert not b.all_open(), "a may be probed now"
    assert b.states() == {"a": State.HALF_OPEN, "b": State.OPEN}


@pytest.mark.parametrize("settings", [{"failures": 0}, {"cooldown_s": 0}, {"rate": 0}, {"window": 0}])
def test_settings_are_checked(settings):
    with pytest.raises(ValueError):
        BreakerSettings(**settings)
