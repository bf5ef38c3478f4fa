"""The database breaker (liftoff_service/db.py): pure, on an injected clock."""
from __future__ import annotations

import pytest
from liftoff_service.db import Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_closed_admits_every_request(clock):
    breaker = Breaker(2.0, clock=clock)
    assert all(breaker.admit() for _ in range(20)) and not breaker.open


def test_a_failure_opens_it_and_nothing_is_admitted_until_the_window_ends(clock):
    breaker = Breaker(2.0, clock=clock)
    breaker.failed()
    assert breaker.open and not breaker.admit()
    clock.now += 1.99
    assert not breaker.admit()


def test_after_the_window_one_request_probes_and_the_others_keep_failing_fast(clock):
    breaker = Breaker(2.0, clock=clock)
    breaker.failed()
    clock.now += 2.0
    assert breaker.admit()
    assert not breaker.admit() and not breaker.admit()


def test_a_probe_that_succeeds_closes_it(clock):
    breaker = Breaker(2.0, clock=clock)
    breaker.failed()
    clock.now += 2.0
    assert breaker.admit()
    breaker.succeeded()
    assert not breaker.open and breaker.admit() and breaker.admit()


def test_a_probe_that_fails_opens_it_for_another_window(clock):
    breaker = Breaker(2.0, clock=clock)
    breaker.failed()
    clock.now += 2.0
    assert breaker.admit()
    breaker.failed()
    assert not breaker.admit()
    clock.now += 2.0
    assert breaker.admit()
