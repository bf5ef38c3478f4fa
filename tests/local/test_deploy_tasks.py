"""`make deploy`'s tasks world (local/deploy.py `real_tasks`) is removed whenever it is not kept: after a walk that
failed, even under `make local-up` (which keeps a world only after a walk that ended well), and after any walk of
`make deploy`. The walk itself, on real tasks, is asserted once, where `make local-up` runs it
(tests/local/test_local_up.py): the two run the same `local.deploy.run`, and `up` keeps the world.

Here the world starts as the walk finds it (the emulator, the stage deployed, the ECR and RDS stand-ins, the load
balancer stand-in, the service's first task running), then the walk fails at once."""
from __future__ import annotations

import pytest

from config import load_config
from local import deploy
from local.assembly import StageStacks
from local.aws import FAKE_ENVIRONMENT
from tests.helpers.box_world import running_emulator
from tests.helpers.emulated_stage import deploy_stage
from tests.helpers.synth import CDK_JSON

pytestmark = pytest.mark.cost(minutes=2)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

FIRST, TARGET = "1.0.0", "1.1.0"


class WalkFailed(Exception):
    pass


def test_a_walk_that_fails_leaves_nothing_of_the_tasks_world_even_when_up_asked_to_keep_it(
        emulator_assembly, tmp_path, tmp_path_factory, docker_daemon, box_image, release_images, monkeypatch):
    stage = load_config(CDK_JSON).stage("staging")
    monkeypatch.setenv("DOCKER_HOST", docker_daemon.host)
    with running_emulator(tmp_path_factory) as emulator:
        for name, value in FAKE_ENVIRONMENT.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)
        deploy_stage(emulator_assembly, stage, image_tag=FIRST)
        deployed = deploy.LocalStage(stage=stage, emulator=emulator, stacks=StageStacks.of(stage), assembly=emulator_assembly)
        seen = {}
        with pytest.raises(WalkFailed):
            with deploy.real_tasks(deployed, [FIRST, TARGET], keep=True, state_dir=tmp_path) as tasks:
                assert tasks is not None, "Docker answers here: the tasks run for real"
                seen["world"] = tasks.name
                seen["containers"] = docker_daemon.run("ps", "--quiet", "--filter", f"label=liftoff.harness={tasks.name}").stdout.split()
                raise WalkFailed("the release walk failed")
    world = seen["world"]
    # The world was running: the stand-ins and at least one task (its app and the pause container holding its network).
    assert len(seen["containers"]) >= 4, seen["containers"]
    for kind in ("ps", "network", "volume"):
        listed = docker_daemon.run(*(["ps", "--all"] if kind == "ps" else [kind, "ls"]), "--quiet",
                                   "--filter", f"label=liftoff.harness={world}").stdout.split()
        assert listed == [], f"{kind} left behind by {world}: {listed}"
    assert not (tmp_path / "boxes.json").exists(), "no world is recorded for `make local-down` to find"
