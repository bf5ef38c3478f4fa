"""make test's scheduling decision (tests/helpers/scheduling.py): which unit a worker gets next."""
from __future__ import annotations

from tests.helpers.scheduling import is_the_short_lane, next_unit, unit_minutes

QUEUE = ["tests/local/test_faulty.py", "tests/local/test_boxes.py", "tests/test_config.py::test_a", "tests/test_app.py::test_b"]
DOCKER = {"tests/local/test_faulty.py", "tests/local/test_boxes.py"}


def test_a_free_worker_takes_the_costliest_docker_unit_first():
    assert next_unit(QUEUE, DOCKER, holds_a_docker_test=False, short_lane=False) == "tests/local/test_faulty.py"


def test_a_worker_behind_a_docker_test_takes_a_short_unit_and_leaves_the_docker_ones_to_a_free_worker():
    assert next_unit(QUEUE, DOCKER, holds_a_docker_test=True, short_lane=False) == "tests/test_config.py::test_a"


def test_the_short_lane_takes_short_units_while_there_are_some_then_the_rest():
    assert next_unit(QUEUE, DOCKER, holds_a_docker_test=False, short_lane=True) == "tests/test_config.py::test_a"
    assert next_unit(QUEUE[:2], DOCKER, holds_a_docker_test=False, short_lane=True) == "tests/local/test_faulty.py"
    assert next_unit(QUEUE[:2], DOCKER, holds_a_docker_test=True, short_lane=False) == "tests/local/test_faulty.py"


def test_the_workers_after_three_docker_lanes_are_short_lanes_from_four_workers_on():
    assert is_the_short_lane("gw3", 4) and is_the_short_lane("gw3", 5) and is_the_short_lane("gw4", 5)
    assert not is_the_short_lane("gw2", 4) and not is_the_short_lane("gw2", 3) and not is_the_short_lane("gw0", 1)
    assert not is_the_short_lane("gw5", 5) and not is_the_short_lane("master", 4)


def test_a_units_minutes_are_its_own_mark_its_modules_or_a_share_of_them():
    assert unit_minutes(test_mark=2.0, module_mark=3.5, one_unit=True, tests_in_module=8) == 2.0
    assert unit_minutes(test_mark=None, module_mark=3.5, one_unit=True, tests_in_module=8) == 3.5
    assert unit_minutes(test_mark=None, module_mark=0.75, one_unit=False, tests_in_module=3) == 0.25
    assert unit_minutes(test_mark=None, module_mark=None, one_unit=False, tests_in_module=3) == 0.0
