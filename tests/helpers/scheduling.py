"""Which work unit an xdist worker gets next (tests/conftest.py's scheduler asks this)."""
from __future__ import annotations

from collections.abc import Iterable, Set

# The first workers are the Docker lanes; any after them are short lanes.
DOCKER_LANES = 3


def is_the_short_lane(worker_id: str, worker_count: int) -> bool:
    """Each worker after the Docker lanes (of four or more) takes the short, CPU-bound units first: the Docker units
    mostly wait on their worlds (sleeps, health checks, bakes), and the short lanes use the cores meanwhile."""
    index = worker_id.removeprefix("gw")
    return index.isdigit() and DOCKER_LANES <= int(index) < worker_count


def next_unit(queue: Iterable[str], docker_units: Set[str], *, holds_a_docker_test: bool, short_lane: bool) -> str:
    """The queue's head (the costliest Docker unit first), except for the short lane, or a worker whose last held
    test is a Docker test: xdist hands a worker its next unit as its last held test starts (pytest needs the next
    item to end a module's fixtures), so a Docker unit given then would wait minutes, committed, while another
    worker frees up first. Those get the first short unit, while there is one."""
    queue = list(queue)
    if holds_a_docker_test or short_lane:
        short = next((unit for unit in queue if unit not in docker_units), None)
        if short is not None:
            return short
    return queue[0]


def unit_minutes(*, test_mark: float | None, module_mark: float | None, one_unit: bool, tests_in_module: int) -> float:
    """What a test's unit costs, for the queue's order (the costliest first, Docker units before the rest): the test's
    own `cost` mark; else its module's, which is what the module costs alone, so shared among its tests when each is
    a unit of its own (nine short Docker tests are not nine units of the whole module's minutes); 0 unmarked."""
    if test_mark is not None:
        return test_mark
    if module_mark is None:
        return 0.0
    return module_mark if one_unit else module_mark / max(1, tests_in_module)
