"""The answer cache's circuit breaker (lib/circuit_breaker.py), on a clock the test moves."""
import logging

import pytest

from lib.circuit_breaker import CircuitBreaker
from tests.helpers import ManualClock


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def breaker(clock):
    return CircuitBreaker("the thing", retry_wait=30, clock=clock)


def warnings_of(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_a_closed_breaker_allows_every_call(breaker):
    assert all(breaker.allows() for _ in range(5))
    breaker.succeeded()
    assert breaker.is_closed


def test_a_failure_opens_it_until_the_wait_is_over(breaker, clock, caplog):
    breaker.failed(TimeoutError("slow"))
    assert not breaker.is_closed
    clock.now += 29.9
    assert [breaker.allows() for _ in range(3)] == [False] * 3
    clock.now += 0.1
    assert breaker.allows(), "one trial once the wait is over"
    assert not breaker.allows(), "only one: the others keep skipping while it runs"
    assert warnings_of(caplog) == ["the thing failed (TimeoutError: slow); answering without "
                                   "it, next try in 30s"]


def test_a_successful_trial_closes_it_and_reports_what_was_skipped(breaker, clock, caplog):
    breaker.failed(ConnectionError("refused"))
    for _ in range(4):
        breaker.allows()
    clock.now += 45
    assert breaker.allows()
    breaker.succeeded()
    assert breaker.is_closed and breaker.allows()
    assert warnings_of(caplog)[1:] == [
        "the thing is back after 45s; answers computed without it: 4"]


def test_a_failed_trial_waits_another_period_without_a_new_warning(breaker, clock, caplog):
    breaker.failed(ConnectionError("refused"))
    clock.now += 30
    assert breaker.allows()
    breaker.failed(ConnectionError("refused"))
    clock.now += 29
    assert not breaker.allows()
    clock.now += 1
    assert breaker.allows()
    assert len(warnings_of(caplog)) == 1


def test_a_new_outage_counts_its_skips_from_zero(breaker, clock, caplog):
    breaker.failed(ConnectionError("one"))
    breaker.allows()
    clock.now += 30
    breaker.allows()
    breaker.succeeded()
    breaker.failed(ConnectionError("two"))
    clock.now += 30
    breaker.allows()
    breaker.succeeded()
    assert warnings_of(caplog)[-1] == (
        "the thing is back after 30s; answers computed without it: 0")


def test_a_slow_success_counts_as_a_failure(clock, caplog):
    breaker = CircuitBreaker("the thing", retry_wait=30, clock=clock, slow_after=0.5)
    breaker.succeeded(took=0.5)
    assert breaker.is_closed, "up to the threshold, a success"
    breaker.succeeded(took=0.9)
    assert not breaker.allows()
    clock.now += 30
    assert breaker.allows()
    breaker.succeeded(took=0.7)
    assert not breaker.is_closed, "a slow trial waits another period"
    clock.now += 30
    assert breaker.allows()
    breaker.succeeded(took=0.01)
    assert breaker.is_closed
    assert warnings_of(caplog) == [
        "the thing failed (slow: a reply took 0.9s); answering without it, next try in 30s",
        "the thing is back after 60s; answers computed without it: 1"]


def test_its_lines_may_be_worded_for_what_the_caller_does_meanwhile(clock, caplog):
    breaker = CircuitBreaker("the thing", retry_wait=30, clock=clock,
                             opened="could not reach it ({error}); trying in {wait:g}s",
                             closed="reached again after {outage:.0f}s, {skipped} put off")
    breaker.failed(ConnectionError("refused {0}"))
    breaker.allows()
    clock.now += 31
    assert breaker.allows()
    breaker.succeeded()
    assert warnings_of(caplog) == ["could not reach it (ConnectionError: refused {0}); trying "
                                   "in 30s", "reached again after 31s, 1 put off"]
