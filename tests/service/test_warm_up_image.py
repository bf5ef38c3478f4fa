"""The slow-starting test release (local/images.py, `warm_up_seconds`): live at once, ready only after its
warm-up — what the host gate must never flip to early (tests/local/test_liftoff_on_faulty_hosts.py)."""
from __future__ import annotations

import pytest

from container_harness import Containers, database_env
from local import images
from service_harness import wait_until

pytestmark = pytest.mark.cost(minutes=0.2)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

WARM_UP_SECONDS = 6


def test_a_warming_release_is_live_at_once_and_ready_only_after_its_warm_up(docker_daemon, service_image, database):
    image = images.release_image(docker_daemon, service_image, "1.1.0", warm_up_seconds=WARM_UP_SECONDS)
    made = Containers(docker_daemon)
    try:
        container = made.create(image, env={**database_env(database), "APP_VERSION": "1.1.0"})
        docker_daemon.run("start", container.id, timeout=60)
        container.wait_serving()
        # Live, but neither ready nor serving: the load balancer's check passes, a request would fail.
        assert container.request("GET", "/healthz").status == 200
        assert container.request("GET", "/readyz").status == 503
        answer = container.request("GET", "/version")
        assert answer.status == 503 and answer.json()["error"] == "warming up"
        wait_until(lambda: container.request("GET", "/readyz").status == 200, deadline_seconds=30, what="/readyz 200")
        assert container.request("GET", "/version").json() == {"version": "1.1.0"}
    finally:
        made.remove_all()
