"""What the modules sharing this directory's world read off a host, and the state each hands the next one."""
from __future__ import annotations

from local import boxes
from local.hosts import StageHosts


def on_host(hosts: StageHosts, box: boxes.Box, *command: str, timeout: float = 300) -> str:
    result = boxes.run_on_box(hosts.daemon, box, *command, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} on {box.instance_id}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def activate(hosts: StageHosts, box: boxes.Box, tag: str):
    return boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", tag, timeout=600)


def active_slot(hosts: StageHosts, box: boxes.Box) -> str:
    return on_host(hosts, box, "cat", "/etc/liftoff/active-slot")


def other_slot(slot: str) -> str:
    return "b" if slot == "a" else "a"


def idle_slot(hosts: StageHosts, box: boxes.Box) -> str:
    return other_slot(active_slot(hosts, box))


def app_container(hosts: StageHosts, box: boxes.Box, slot: str | None = None) -> str:
    """The container of `slot` (the active one by default); the shipped production stage runs two slots."""
    name = f"liftoff-app-{slot or active_slot(hosts, box)}"
    return on_host(hosts, box, "docker", "inspect", "--format", "{{.Id}}", name)


def running_containers(hosts: StageHosts, box: boxes.Box) -> set[str]:
    return set(on_host(hosts, box, "docker", "ps", "--format", "{{.Names}}").split())


def back_on_1_0_0(hosts: StageHosts) -> None:
    """Both hosts serve 1.0.0 again (from either slot), with nothing warm beside it, and are in service."""
    for box in hosts.hosts:
        result = activate(hosts, box, "1.0.0")
        assert result.returncode == 0, result.stderr
        on_host(hosts, box, "/opt/liftoff/bin/liftoff-retire", idle_slot(hosts, box))
        assert hosts.serving_version(box) == "1.0.0"
        assert running_containers(hosts, box) == {f"liftoff-app-{active_slot(hosts, box)}"}
    hosts.wait_in_service()
