"""The host-box modules that share one world (conftest.py here): the releases it holds, for the tests to name, what
the directory's one work unit costs, and the state each module hands the next."""
from __future__ import annotations

from local.hosts import StageHosts
from tests.helpers.box_world import activate, active_slot, idle_slot, on_host, running_containers

WARMING = "1.2.0-warmup"  # a slow starter: live at once, ready after WARM_UP_SECONDS
WARM_UP_SECONDS = 10
BROKEN = "1.9.9-broken"  # its service exits at every start (migrate works, serve never answers)
# The directory's work unit alone on 2 cores (the world and its four modules; measured): every module carries it, so
# the unit starts with the costliest (tests/conftest.py).
UNIT_MINUTES = 5


def back_on_1_0_0(hosts: StageHosts) -> None:
    """Both hosts serve 1.0.0 again (from either slot), with nothing warm beside it, and are in service."""
    for box in hosts.hosts:
        result = activate(hosts, box, "1.0.0")
        assert result.returncode == 0, result.stderr
        on_host(hosts, box, "/opt/liftoff/bin/liftoff-retire", idle_slot(hosts, box))
        assert hosts.serving_version(box) == "1.0.0"
        assert running_containers(hosts, box) == {f"liftoff-app-{active_slot(hosts, box)}"}
    hosts.wait_in_service()
