"""The ECS stand-in's scheduler: the pure rules it deploys by (tests/local/test_ecs_stage.py runs them on real tasks)."""
from __future__ import annotations

import pytest

from local.ecs_service import circuit_breaker_threshold, rolling_bounds, shift_steps


@pytest.mark.parametrize("desired, minimum, maximum, bounds", [
    (2, 100, 200, (2, 4)), (3, 50, 200, (2, 6)), (1, 100, 150, (1, 1)), (4, 50, 125, (2, 5)), (3, 67, 150, (3, 4)),
    (3, 0, 100, (0, 3)), (0, 100, 200, (0, 0)),
])
def test_rolling_bounds_round_the_minimum_up_and_the_maximum_down_but_never_below_desired(desired, minimum, maximum, bounds):
    assert rolling_bounds(desired, minimum, maximum) == bounds


@pytest.mark.parametrize("desired, threshold", [(1, 3), (6, 3), (7, 4), (10, 5), (400, 200), (1000, 200)])
def test_the_circuit_breaker_trips_at_half_the_desired_count_between_3_and_200(desired, threshold):
    assert circuit_breaker_threshold(desired) == threshold


def test_blue_green_moves_everything_at_once_then_bakes():
    assert shift_steps("BLUE_GREEN", {"bakeTimeInMinutes": 5}) == [(100, 5)]


def test_canary_moves_its_share_waits_its_bake_then_the_rest_then_the_deployment_bake():
    configuration = {"bakeTimeInMinutes": 5, "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 2}}
    assert shift_steps("CANARY", configuration) == [(10, 2), (100, 5)]


def test_linear_moves_equal_steps_with_a_wait_between_then_the_deployment_bake():
    configuration = {"bakeTimeInMinutes": 5, "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 1}}
    assert shift_steps("LINEAR", configuration) == [(25, 1), (50, 1), (75, 1), (100, 5)]
    # A fractional step (AWS takes a double) keeps its pace; the last step lands on 100.
    steps = shift_steps("LINEAR", {"bakeTimeInMinutes": 0, "linearConfiguration": {"stepPercent": 12.5, "stepBakeTimeInMinutes": 1}})
    assert [weight for weight, _ in steps] == [12, 25, 38, 50, 62, 75, 88, 100] and steps[-1] == (100, 0)
