"""The container harness's failure paths: a clear error, and nothing left behind."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import uuid

import pytest

from local import boxes, docker, images
from local.emulator import free_port
from tests.helpers.box_world import wait_until

pytestmark = pytest.mark.cost(minutes=0.65)  # alone, on 2 cores: the costliest start first (tests/conftest.py)


def test_no_docker_command_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(docker.DockerError, match=r"no `docker` command on PATH: install it with `apt-get install docker.io"):
        docker.connect_or_start(tmp_path)


def test_a_daemon_named_by_docker_host_that_does_not_answer_is_not_replaced(tmp_path):
    port = free_port()
    with pytest.raises(docker.DockerError, match=rf"DOCKER_HOST=tcp://127.0.0.1:{port} does not answer"):
        docker.connect_or_start(tmp_path, host=f"tcp://127.0.0.1:{port}")
    assert not (tmp_path / "dockerd.pid").exists()


class ImageStore:
    """A daemon that has the images in `present`, noting what it is asked to import."""

    def __init__(self, present: set[str]):
        self.present, self.imported = present, []

    def run(self, *arguments: str, **_):
        if arguments[:2] == ("image", "inspect"):
            return subprocess.CompletedProcess(arguments, 0 if arguments[2] in self.present else 1, "", "")
        assert arguments[0] == "import", arguments
        self.imported.append((arguments[-2], arguments[-1]))
        return subprocess.CompletedProcess(arguments, 0, "", "")


def test_a_root_filesystem_the_daemon_has_is_not_made_again_in_a_new_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(images.shutil, "which", lambda _: None)  # mmdebstrap would be needed to make the tar
    tag = f"liftoff/box-rootfs:{images.rootfs_key(images.BOX_PACKAGES)}"
    daemon = ImageStore({tag})
    assert images.imported_rootfs(daemon, "box-rootfs", images.BOX_PACKAGES, cache_dir=tmp_path) == tag
    assert daemon.imported == [] and list(tmp_path.iterdir()) == []
    # A daemon without it imports the cached tar; with neither, the error names what to install.
    tar = tmp_path / f"box-rootfs-{images.SUITE}-{images.rootfs_key(images.BOX_PACKAGES)}.tar"
    tar.write_bytes(b"")
    daemon = ImageStore(set())
    assert images.imported_rootfs(daemon, "box-rootfs", images.BOX_PACKAGES, cache_dir=tmp_path) == tag
    assert daemon.imported == [(str(tar), tag)]
    tar.unlink()
    with pytest.raises(images.ImageError, match=r"no cached box-rootfs-bookworm-\w+\.tar and no mmdebstrap to make it"):
        images.imported_rootfs(ImageStore(set()), "box-rootfs", images.BOX_PACKAGES, cache_dir=tmp_path)


def test_a_found_daemon_is_never_stopped(docker_daemon):
    found = docker.Daemon(host=docker_daemon.host)
    docker.stop(found)  # not ours: nothing is signalled
    assert docker_daemon.answers()


def test_a_build_on_a_missing_base_fails_naming_it(docker_daemon):
    with pytest.raises(images.ImageError, match=r"building service/Dockerfile on liftoff/no-such-base:0 failed"):
        images.build_service_image(docker_daemon, "liftoff/no-such-base:0", tag=f"liftoff/test-broken:{uuid.uuid4().hex[:6]}")


def test_an_unknown_base_choice_is_refused(docker_daemon):
    with pytest.raises(images.ImageError, match=r"'pypi' is not one of auto, registry, local"):
        images.python_base(docker_daemon, "pypi")


def test_the_python_base_every_host_pulls_carries_no_documentation_translations_or_perl(docker_daemon, python_base_image):
    # Whichever base `auto` chose (here, with no public registry reachable, the one made from the Debian archive).
    listed = docker_daemon.run(
        "run", "--rm", "--entrypoint", "sh", python_base_image, "-c",
        "find /usr/share/man /usr/share/locale -type f ! -name locale.alias 2>/dev/null | head -3; "
        "find /usr/share/doc -type f ! -name copyright | head -3; "
        "for package in usrmerge perl-modules-5.36 libperl5.36; do dpkg -s $package >/dev/null 2>&1 && echo $package; done; "
        "echo end", timeout=120)
    assert listed.stdout.split() == ["end"], listed.stdout


def test_the_endpoint_proxy_refuses_a_taken_port(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(boxes.BoxError, match=rf"port {port} on the boxes' gateway 127.0.0.1 is taken"):
            boxes._start_endpoint_proxy("127.0.0.1", free_port(), tmp_path, tmp_path / "log", port=port)


@pytest.fixture
def bare_world(docker_daemon, box_image, tmp_path):
    name = f"lt-{uuid.uuid4().hex[:6]}"
    world = boxes.start_world(docker_daemon, name=name, image=box_image, emulator_port=free_port(), region="us-east-1",
                              state_dir=tmp_path, database={"DB_USER": "u", "DB_PASSWORD": "p", "DB_NAME": "d", "DB_PORT": "5432"})
    yield world
    boxes.stop_world(docker_daemon, world, tmp_path)
    leftovers = docker_daemon.run("ps", "--all", "--quiet", "--filter", f"label=liftoff.harness={name}").stdout.split()
    networks = docker_daemon.run("network", "ls", "--quiet", "--filter", f"label=liftoff.harness={name}").stdout.split()
    assert leftovers == [] and networks == []
    with pytest.raises(ProcessLookupError):
        os.kill(world.proxy_pid, 0)
    assert not (tmp_path / boxes.WORLD_RECORD).exists()


def boot(docker_daemon, world, box_image, tmp_path, user_data: str) -> boxes.Box:
    return boxes.boot_box(docker_daemon, world, image=box_image, instance_id=f"i-{uuid.uuid4().hex[:17]}", local_ipv4="10.0.0.9",
                          user_data=user_data.encode(), availability_zone="us-east-1a", state_dir=tmp_path)


@pytest.mark.cost(minutes=0.15)  # each a unit of its own: what it takes in a run (images built)
def test_a_host_that_never_signals_fails_with_its_output_and_leaves_nothing(docker_daemon, box_image, bare_world, tmp_path):
    box = boot(docker_daemon, bare_world, box_image, tmp_path, "#!/bin/bash\necho 'user data ran, no signal'\n")
    # The user data has run (and so will never signal) before the wait starts: a short timeout then fails the same way
    # a long one would, however long the box took to boot.
    wait_until(lambda: "user data ran, no signal" in boxes.boot_output(docker_daemon, box), 120, "the user data ran", interval=1)
    with pytest.raises(boxes.BoxError, match=rf"host {box.instance_id} did not signal within 2 s(.|\n)*user data ran, no signal"):
        boxes.wait_signalled(docker_daemon, box, timeout=2)


@pytest.mark.cost(minutes=0.15)  # each a unit of its own: what it takes in a run (images built)
def test_a_host_whose_user_data_fails_signals_failure_with_its_output(docker_daemon, box_image, bare_world, tmp_path):
    user_data = ("#!/bin/bash\nfunction exitTrap(){\nexitCode=$?\n"
                 "/opt/aws/bin/cfn-signal --stack s --resource Hosts --region us-east-1 -e $exitCode\n}\ntrap exitTrap EXIT\n"
                 "set -euo pipefail\ndnf install -y docker nginx\n")
    box = boot(docker_daemon, bare_world, box_image, tmp_path, user_data)
    with pytest.raises(boxes.BoxError, match=r"signalled FAILURE \(user data exited 1\)(.|\n)*package 'nginx' is not in the box image"):
        boxes.wait_signalled(docker_daemon, box, timeout=120)


@pytest.mark.cost(minutes=0.2)  # each a unit of its own: what it takes in a run (images built)
def test_user_data_runs_only_once_the_metadata_service_and_dns_answer(docker_daemon, box_image, bare_world, tmp_path):
    # The user data's very first commands, each tried once with a short timeout (no retry): on a box whose
    # cloud-init stand-in started it before its IMDS or DNS answered, one of them fails and the box signals FAILURE.
    user_data = ("#!/bin/bash\nfunction exitTrap(){\nexitCode=$?\n"
                 "/opt/aws/bin/cfn-signal --stack s --resource Hosts --region us-east-1 -e $exitCode\n}\ntrap exitTrap EXIT\n"
                 "set -euo pipefail\n"
                 "token=$(curl -sf --max-time 1 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)\n"
                 "curl -sf --max-time 1 -H \"X-aws-ec2-metadata-token: $token\" "
                 "http://169.254.169.254/latest/meta-data/iam/security-credentials/liftoff-host | jq -e .AccessKeyId\n"
                 "getent hosts ssm.us-east-1.amazonaws.com\n")
    box = boot(docker_daemon, bare_world, box_image, tmp_path, user_data)
    assert boxes.wait_signalled(docker_daemon, box, timeout=120)["status"] == "SUCCESS"
    # ... and the box's AWS CLI finds the instance profile's credentials through it.
    found = boxes.run_on_box(docker_daemon, box, "aws", "configure", "list", timeout=60)
    assert found.returncode == 0 and "iam-role" in found.stdout, found.stdout + found.stderr


class RecordingEcr:
    """The emulated ECR's side of a push, recorded (the registry is the subject here)."""

    class exceptions:
        LimitExceededException = type("LimitExceededException", (Exception,), {})

    def __init__(self):
        self.images: dict[tuple[str, str], str] = {}

    def client(self, service: str):
        return self

    def put_image(self, *, repositoryName, imageTag, imageManifest, imageManifestMediaType):
        self.images[repositoryName, imageTag] = imageManifest
        return {"image": {"imageId": {"imageDigest": "sha256:" + hashlib.sha256(imageManifest.encode()).hexdigest()}}}

    def start_image_scan(self, **_):
        pass


class RecordingDaemon:
    """The run's daemon, noting each docker command it is asked for."""

    def __init__(self, daemon: docker.Daemon):
        self.daemon, self.commands = daemon, []

    def run(self, *arguments: str, **options):
        self.commands.append(arguments[0])
        return self.daemon.run(*arguments, **options)


@pytest.mark.cost(minutes=0.2)  # each a unit of its own: what it takes in a run (images built)
def test_an_image_docker_pushed_once_goes_to_another_repository_as_the_same_manifest_and_blobs(
        docker_daemon, bare_world, release_images, tmp_path):
    ecr, cache, image = RecordingEcr(), tmp_path / "pushed", release_images["1.0.0"]
    daemon = RecordingDaemon(docker_daemon)
    first = boxes.push_images(daemon, bare_world, ecr, "first", {"1.0.0": image}, cache_dir=cache)
    assert "push" in daemon.commands and len(list((cache / "manifests").glob("*.json"))) == 1
    daemon.commands.clear()
    second = boxes.push_images(daemon, bare_world, ecr, "second", {"1.0.0": image}, cache_dir=cache)
    assert "push" not in daemon.commands  # the kept blobs went up through the registry API
    assert second == first and ecr.images["second", "1.0.0"] == ecr.images["first", "1.0.0"]
    # What a host pulls from the second repository is the image itself.
    pulled = f"{bare_world.registry_host}/second:1.0.0"
    docker_daemon.run("pull", "--quiet", pulled, timeout=300)
    try:
        inspect = ("image", "inspect", "--format", "{{.Id}}")
        assert docker_daemon.run(*inspect, pulled).stdout == docker_daemon.run(*inspect, image).stdout
    finally:
        docker_daemon.run("rmi", pulled, check=False)


@pytest.mark.cost(minutes=0.1)  # each a unit of its own: what it takes in a run (images built)
def test_a_registry_that_refuses_an_upload_fails_naming_the_call(docker_daemon, bare_world, release_images, tmp_path):
    kept = {"manifest": json.dumps({"config": {"digest": "sha256:" + "0" * 64}, "layers": []}),
            "media_type": boxes.MANIFEST_TYPES[0]}
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / ("sha256-" + "0" * 64)).write_bytes(b"not what the digest says")
    with pytest.raises(boxes.BoxError, match=rf"the ECR stand-in \({bare_world.name}-ecr\) answered PUT /v2/r/blobs/uploads/.* with 400"):
        boxes.upload_image(bare_world, "r", "1.0.0", kept, tmp_path / "blobs")


def test_a_daemon_whose_socket_is_gone_fails_an_inspect_naming_it(tmp_path):
    gone = docker.Daemon(host=f"unix://{tmp_path}/docker.sock")
    with pytest.raises(docker.DockerError, match=rf"the Docker daemon at unix://{tmp_path}/docker.sock did not answer an inspect of box"):
        gone.containers("box")


def test_the_engine_api_read_shows_what_docker_inspect_shows(docker_daemon, box_image):
    name = f"liftoff-inspect-{uuid.uuid4().hex[:6]}"
    running, created, absent = f"{name}-running", f"{name}-created", f"{name}-absent"
    docker_daemon.run("run", "--detach", "--name", running, "--entrypoint", "sleep", box_image, "300")
    docker_daemon.run("create", "--name", created, "--entrypoint", "sleep", box_image, "300")
    try:
        found = docker_daemon.containers(running, created, absent)
        assert set(found) == {running, created}
        assert found[running]["State"]["Running"] is True and found[created]["State"]["Running"] is False
        assert docker_daemon.running(running, created, absent) == {running}
        for each in (running, created):
            cli = json.loads(docker_daemon.run("inspect", each).stdout)[0]
            assert (found[each]["Id"], found[each]["Name"], found[each]["State"]["Status"]) == (cli["Id"], cli["Name"], cli["State"]["Status"])
        # A daemon on another kind of host is read through the CLI, to the same answer (an id prefix asked for too).
        short = found[running]["Id"][:12]
        by_cli = docker_daemon._containers_by_cli((running, created, absent, short), 30)
        assert set(by_cli) == {running, created, short}
        assert by_cli[short]["Id"] == by_cli[running]["Id"] == found[running]["Id"]
        assert by_cli[created]["State"]["Status"] == found[created]["State"]["Status"] == "created"
    finally:
        docker_daemon.run("rm", "--force", running, created, check=False)


def test_an_exec_through_the_engine_api_answers_as_the_cli_does(docker_daemon, box_image):
    running, stopped = f"liftoff-exec-{uuid.uuid4().hex[:6]}", f"liftoff-exec-{uuid.uuid4().hex[:6]}-stopped"
    docker_daemon.run("run", "--detach", "--name", running, "--entrypoint", "sleep", box_image, "300")
    docker_daemon.run("create", "--name", stopped, "--entrypoint", "sleep", box_image, "300")
    script = "printf 'out %s\\n' \"$1\"; printf 'err\\n' >&2; head -c 100000 /dev/zero | tr '\\0' x; exit 3"
    try:
        by_api = docker_daemon.run("exec", running, "bash", "-c", script, "-", "a b", check=False)
        by_cli = docker_daemon._cli(["docker", "exec", running, "bash", "-c", script, "-", "a b"], input=None, timeout=60, text=True)
        assert (by_api.returncode, by_api.stdout, by_api.stderr) == (by_cli.returncode, by_cli.stdout, by_cli.stderr)
        assert by_api.returncode == 3 and by_api.stdout.startswith("out a b\n") and len(by_api.stdout) == 8 + 100000
        assert docker_daemon.run("exec", running, "true").returncode == 0
        with pytest.raises(docker.DockerError, match=r"`docker exec .*` exited 3: err"):
            docker_daemon.run("exec", running, "bash", "-c", script)
        # What the daemon refuses is the CLI's exit 1, with the daemon's own words.
        not_running = docker_daemon.run("exec", stopped, "true", check=False)
        assert not_running.returncode == 1 and "is not running" in not_running.stderr, not_running
        absent = docker_daemon.run("exec", f"{running}-absent", "true", check=False)
        assert absent.returncode == 1 and "No such container" in absent.stderr, absent
        # The timeout bounds the whole call.
        with pytest.raises(docker.DockerError, match=r"did not finish within 1 s"):
            docker_daemon.run("exec", running, "sleep", "5", timeout=1)
        # Bytes when asked for, as from the CLI.
        assert docker_daemon.run("exec", running, "printf", "\\377", text=False).stdout == b"\xff"
    finally:
        docker_daemon.run("rm", "--force", running, stopped, check=False)
