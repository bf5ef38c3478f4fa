"""Host boxes: emulated EC2 instances that boot from the user data the emulator's launch template holds.

A *box world* is everything the hosts of one emulated stage reach, on one Docker network of its own:
- the AWS endpoints: `python -m local.endpoints` on the network's gateway terminates TLS for
  `*.<region>.amazonaws.com` (a certificate from a CA made for this world) and forwards to the
  emulator on loopback, so the hosts' AWS CLI and Docker's awslogs driver call the real endpoint
  names, unchanged (and target health comes from the load balancer stand-in, local/lb.py);
- the ECR stand-in: a real registry (Debian's docker-registry) serving TLS as
  `<account>.dkr.ecr.<region>.amazonaws.com`, also published on loopback for pushes from this machine;
- the RDS stand-in: a real PostgreSQL server with the stage secret's user and password;
- one box per instance: a systemd container (Debian standing in for AL2023) with its own Docker
  daemon, an IMDSv2 stand-in on 169.254.169.254, DNS that answers AWS names with the addresses above
  and nothing else, and a cloud-init stand-in that runs the user data bytes once.

Everything is started by this module and recorded (container ids, the proxy's pid) in the state
directory, and `stop_world` removes exactly that. docs/local-emulator.md lists every substitution.
"""
from __future__ import annotations

import http.client
import io
import ipaddress
import json
import ssl
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from local import ports, processes
from local.docker import Daemon, DockerError

REPO = Path(__file__).resolve().parents[1]
BOX_RUN_OPTIONS = (
    # systemd as PID 1 (verified on these machines; --privileged fails here: no cap_sys_resource).
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host",
    # The box's own Docker keeps its images on a volume: overlayfs cannot stack on the box's own overlay.
    "--volume", "/var/lib/docker",
    # The box's DNS (dnsmasq, no upstream): no name lookup ever leaves the box world.
    "--dns", "127.0.0.1",
)
SIGNAL_FILE = "/var/lib/liftoff-box/cfn-signal.json"
# Written by the cloud-init stand-in when the box's metadata service or DNS never answered: no user data ran.
NOT_READY_FILE = "/var/lib/liftoff-box/not-ready"
BOOT_TIMEOUT_SECONDS = 300.0
WORLD_RECORD = "boxes.json"
Say = Callable[[str], None]


class BoxError(DockerError):
    """A box or a piece of its world failed; the message names it and shows what to read."""


@dataclass
class Box:
    instance_id: str
    container: str
    address: str
    local_ipv4: str


@dataclass
class BoxWorld:
    name: str
    network: str
    gateway: str
    region: str
    registry_container: str
    registry_address: str
    registry_port: int  # on loopback, for pushes from this machine
    database_container: str
    database_address: str
    proxy_pid: int
    pki_dir: str
    health_file: str  # target states the load balancer stand-in writes, for the endpoint proxy
    boxes: dict[str, Box] = field(default_factory=dict)

    @property
    def registry_host(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    def record(self, state_dir: Path) -> None:
        (state_dir / WORLD_RECORD).write_text(json.dumps(asdict(self), indent=2))

    @staticmethod
    def recorded(state_dir: Path) -> "BoxWorld | None":
        try:
            data = json.loads((state_dir / WORLD_RECORD).read_text())
        except FileNotFoundError:
            return None
        data["boxes"] = {key: Box(**value) for key, value in data.get("boxes", {}).items()}
        data.setdefault("health_file", "")  # recorded by a version before the load balancer stand-in
        return BoxWorld(**{key: value for key, value in data.items() if key in BoxWorld.__dataclass_fields__})


# --- certificates ------------------------------------------------------------------------------

EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


def make_pki(directory: Path, region: str) -> Path:
    """A CA for this world and one server certificate for the AWS endpoint and registry names."""
    directory.mkdir(parents=True, exist_ok=True)
    # S3's names too (the host files asset user data copies down): virtual-hosted buckets, regional and global.
    names = [f"*.{region}.amazonaws.com", f"*.ecr.{region}.amazonaws.com", f"*.dkr.ecr.{region}.amazonaws.com",
             f"*.s3.{region}.amazonaws.com", "s3.amazonaws.com", "*.s3.amazonaws.com"]

    def openssl(*arguments: str) -> None:
        result = subprocess.run(["openssl", *arguments], cwd=directory, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise BoxError(f"openssl {arguments[0]} failed: {result.stderr.strip()[-500:]}")

    # P-256 keys: an RSA key took 0.2-0.6 CPU-s to make here (two a world, a dozen worlds a test run), and every TLS
    # handshake the world's endpoints answer signs with it; the boxes' AWS CLI, curl, Docker and the registry take either.
    openssl("req", "-x509", *EC_KEY, "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
            "-subj", "/CN=liftoff local emulator CA")
    openssl("req", *EC_KEY, "-nodes", "-keyout", "endpoints.key", "-out", "endpoints.csr",
            "-subj", f"/CN={names[0]}")
    (directory / "endpoints.ext").write_text(
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=" + ",".join(f"DNS:{name}" for name in names) + "\n")
    openssl("x509", "-req", "-in", "endpoints.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "endpoints.crt", "-days", "7", "-extfile", "endpoints.ext")
    (directory / "endpoints.pem").write_text((directory / "endpoints.crt").read_text() + (directory / "endpoints.key").read_text())
    for path in directory.iterdir():
        path.chmod(0o644 if path.suffix == ".crt" else 0o600)
    # The registry container's user reads the key through a bind mount.
    (directory / "endpoints.key").chmod(0o644)
    return directory


# --- the world ---------------------------------------------------------------------------------

def start_world(daemon: Daemon, *, name: str, image: str, emulator_port: int, region: str, state_dir: Path,
                database: dict[str, str], say: Say = print) -> BoxWorld:
    """Network, AWS endpoint proxy, ECR and RDS stand-ins; on any failure, nothing stays behind."""
    state_dir.mkdir(parents=True, exist_ok=True)
    pki = make_pki(state_dir / f"{name}-pki", region)
    started: list[tuple[str, str]] = []
    proxy: subprocess.Popen | None = None
    try:
        network, gateway = _network_with_a_configured_subnet(daemon, name)
        started.append(("network", network))
        health_file = state_dir / f"{name}-target-health.json"
        proxy = _start_endpoint_proxy(gateway, emulator_port, pki, state_dir / f"{name}-endpoints.log", health_file=health_file)
        registry = daemon.run(
            "run", "--detach", "--name", f"{name}-ecr", "--label", f"liftoff.harness={name}", "--network", network,
            "--publish", "127.0.0.1::443", "--volume", f"{pki}:/etc/liftoff-pki:ro",
            "--entrypoint", "/usr/bin/docker-registry", image, "serve", "/etc/liftoff-box/registry.yml").stdout.strip()
        started.append(("container", registry))
        db = daemon.run(
            "run", "--detach", "--name", f"{name}-rds", "--label", f"liftoff.harness={name}", "--network", network,
            *[argument for key, value in database.items() for argument in ("--env", f"{key}={value}")],
            "--entrypoint", "/usr/local/lib/liftoff-box/rds", image).stdout.strip()
        started.append(("container", db))
        world = BoxWorld(
            name=name, network=network, gateway=gateway, region=region,
            registry_container=registry, registry_address=_address(daemon, registry, network),
            registry_port=int(daemon.run("port", registry, "443/tcp").stdout.strip().splitlines()[0].rsplit(":", 1)[1]),
            database_container=db, database_address=_address(daemon, db, network),
            proxy_pid=proxy.pid, pki_dir=str(pki), health_file=str(health_file))
        world.record(state_dir)
        # Boxes boot only into a world that answers: the registry's API (not only docker-proxy's port), the database.
        _wait(lambda: _registry_answers(world), 30, f"the ECR stand-in ({name}-ecr) did not answer",
              lambda: daemon.run("logs", "--tail", "20", registry, check=False).stderr)
        _wait(lambda: daemon.run("exec", db, "pg_isready", "-q", "-h", "127.0.0.1", "-p", database["DB_PORT"],
                                 check=False).returncode == 0,
              60, f"the RDS stand-in ({name}-rds) did not accept connections",
              lambda: daemon.run("logs", "--tail", "20", db, check=False).stderr)
        return world
    except BaseException:
        if proxy is not None:
            processes.stop(proxy.pid)
        for kind, identifier in reversed(started):
            daemon.run(kind, "rm", *(["--force", "--volumes"] if kind == "container" else []), identifier, check=False)
        (state_dir / WORLD_RECORD).unlink(missing_ok=True)
        raise


def stop_world(daemon: Daemon, world: BoxWorld, state_dir: Path) -> None:
    """Remove the boxes, the stand-ins, anything else labelled with the world's name, and the network this world started;
    stop its proxy by pid."""
    containers = [box.container for box in world.boxes.values()] + [world.registry_container, world.database_container]
    # And whatever else carries the world's label (the ECS stand-in's task containers): the network goes only when empty.
    labelled = daemon.run("ps", "--all", "--quiet", "--filter", f"label=liftoff.harness={world.name}", check=False).stdout.split()
    containers += [container for container in labelled if container not in containers]
    if containers:
        daemon.run("rm", "--force", "--volumes", *containers, check=False, timeout=120)
    volumes = daemon.run("volume", "ls", "--quiet", "--filter", f"label=liftoff.harness={world.name}", check=False).stdout.split()
    if volumes:
        daemon.run("volume", "rm", "--force", *volumes, check=False)
    daemon.run("network", "rm", world.network, check=False)
    if b"local.endpoints" in processes.command_line(world.proxy_pid):  # after a reboot the recorded pid may be anyone's
        processes.stop(world.proxy_pid)
    (state_dir / WORLD_RECORD).unlink(missing_ok=True)


MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json")


# What `docker push` sent, kept by local image id: the manifest and the compressed blobs it names. Docker compresses
# every layer again for each registry it has not pushed to (a few CPU-seconds per release per world), so once one
# world's registry holds an image, the others get the same bytes through the registry API (as `crane copy` does):
# the same manifest, hence the same digest.
PUSHED_CACHE = REPO / ".cache" / "pushed-images"


def push_images(daemon: Daemon, world: BoxWorld, session, repository: str, images: dict[str, str],
                *, cache_dir: Path = PUSHED_CACHE) -> dict[str, str]:
    """Push each `version -> local image` to the world's ECR stand-in and record its manifest in the emulator's ECR
    (with a scan started, as scan-on-push does); return each version's digest."""
    ecr = session.client("ecr")
    digests = {}
    for version, image in images.items():
        image_id = daemon.run("image", "inspect", "--format", "{{.Id}}", image).stdout.strip().removeprefix("sha256:")
        kept = cache_dir / "manifests" / f"{image_id}.json"
        if kept.exists():
            upload_image(world, repository, version, json.loads(kept.read_text()), cache_dir / "blobs")
            manifest, media_type = registry_manifest(world, repository, version)
        else:
            reference = f"{world.registry_host}/{repository}:{version}"
            daemon.run("tag", image, reference)
            daemon.run("push", "--quiet", reference, timeout=600)
            daemon.run("rmi", reference, check=False)
            manifest, media_type = keep_pushed(world, repository, version, kept, cache_dir / "blobs")
        recorded = ecr.put_image(repositoryName=repository, imageTag=version, imageManifest=manifest,
                                 imageManifestMediaType=media_type)["image"]
        try:
            ecr.start_image_scan(repositoryName=repository, imageId={"imageTag": version})
        except ecr.exceptions.LimitExceededException:
            pass  # the same image under another tag: its scan has started already
        digests[version] = recorded["imageId"]["imageDigest"]
    return digests


def _manifest_blobs(manifest: dict) -> list[str]:
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


def _kept_blob(blobs: Path, digest: str) -> Path:
    return blobs / digest.replace(":", "-")


def keep_pushed(world: BoxWorld, repository: str, tag: str, kept: Path, blobs: Path) -> tuple[str, str]:
    """What the registry now serves for `repository:tag`, into the cache: each blob, then the manifest that names them
    (written last, each whole before it is renamed into place, so a reader never finds a manifest without its blobs).
    Returns the manifest and its media type, as `registry_manifest` does."""
    manifest, media_type = registry_manifest(world, repository, tag)
    blobs.mkdir(parents=True, exist_ok=True)
    for digest in _manifest_blobs(json.loads(manifest)):
        path = _kept_blob(blobs, digest)
        if not path.exists():
            partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
            partial.write_bytes(registry_blob(world, repository, digest))
            partial.replace(path)
    kept.parent.mkdir(parents=True, exist_ok=True)
    partial = kept.with_name(f"{kept.name}.{uuid.uuid4().hex}.partial")
    partial.write_text(json.dumps({"manifest": manifest, "media_type": media_type}))
    partial.replace(kept)
    return manifest, media_type


def upload_image(world: BoxWorld, repository: str, tag: str, kept: dict, blobs: Path) -> None:
    """The distribution API's push of a kept image: each blob the registry lacks (a monolithic upload: POST, then PUT
    with its digest), then the manifest under `tag`."""
    for digest in _manifest_blobs(json.loads(kept["manifest"])):
        if _registry_call(world, "HEAD", f"/v2/{repository}/blobs/{digest}", expect=(200, 404)) == 200:
            continue
        location = _registry_call(world, "POST", f"/v2/{repository}/blobs/uploads/", expect=(202,), header="Location")
        location = location if location.startswith("/") else urllib.parse.urlsplit(location)._replace(scheme="", netloc="").geturl()
        separator = "&" if "?" in location else "?"
        _registry_call(world, "PUT", f"{location}{separator}digest={urllib.parse.quote(digest)}", expect=(201,),
                       body=_kept_blob(blobs, digest).read_bytes(), content_type="application/octet-stream")
    _registry_call(world, "PUT", f"/v2/{repository}/manifests/{tag}", expect=(201,), body=kept["manifest"].encode(),
                   content_type=kept["media_type"])


def _registry_call(world: BoxWorld, method: str, path: str, *, expect: tuple[int, ...], body: bytes | None = None,
                   content_type: str | None = None, header: str | None = None):
    """One call to the world's registry; its status (or the named response header), or BoxError naming the call."""
    request = urllib.request.Request(f"https://{world.registry_host}{path}", data=body, method=method,
                                     headers={"Content-Type": content_type} if content_type else {})
    try:
        with urllib.request.urlopen(request, context=_registry_tls(world), timeout=120) as response:
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as error:
        status, headers = error.code, error.headers
        detail = error.read().decode(errors="replace")[:300]
    else:
        detail = ""
    if status not in expect:
        raise BoxError(f"the ECR stand-in ({world.name}-ecr) answered {method} {path.split('?')[0]} with {status}, not "
                       f"{' or '.join(map(str, expect))}: {detail}")
    return headers.get(header, "") if header else status


def registry_manifest(world: BoxWorld, repository: str, tag: str) -> tuple[str, str]:
    """The manifest the ECR stand-in serves for `repository:tag`, and its media type."""
    with _registry_get(world, f"/v2/{repository}/manifests/{tag}", {"Accept": ", ".join(MANIFEST_TYPES)}) as response:
        return response.read().decode(), response.headers.get("Content-Type", MANIFEST_TYPES[0])


def registry_blob(world: BoxWorld, repository: str, digest: str) -> bytes:
    """A blob (a layer, an image's config) as the ECR stand-in serves it: what GetDownloadUrlForLayer leads to on AWS."""
    with _registry_get(world, f"/v2/{repository}/blobs/{digest}", {}) as response:
        return response.read()


def _registry_tls(world: BoxWorld) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(Path(world.pki_dir) / "ca.crt"))
    context.check_hostname = False  # the certificate names the ECR host; we reach it on loopback
    return context


def _registry_get(world: BoxWorld, path: str, headers: dict[str, str]):
    return urllib.request.urlopen(urllib.request.Request(f"https://{world.registry_host}{path}", headers=headers),
                                  context=_registry_tls(world), timeout=30)


def dnsmasq_config(world: BoxWorld) -> str:
    return "\n".join([
        "no-resolv", "no-hosts", "bind-dynamic", "listen-address=127.0.0.1",
        # The box's own Docker bridge (nested_daemon_config): its containers ask here.
        "listen-address=192.168.239.1",
        f"address=/amazonaws.com/{world.gateway}",
        f"address=/dkr.ecr.{world.region}.amazonaws.com/{world.registry_address}",
        f"address=/rds.amazonaws.com/{world.database_address}",
        "",
    ])


def nested_daemon_config(instance_id: str) -> str:
    """The box's own Docker: its bridge (the address its DNS listens on), and a cgroup parent of its own.

    The boxes share the machine's cgroup hierarchy (cgroup v1, host namespace: what systemd needs here),
    so a box's containers would otherwise land in the machine daemon's own `/docker` cgroups, beside
    every other box's."""
    return json.dumps({"bip": "192.168.239.1/24", "dns": ["192.168.239.1"], "storage-driver": "overlay2",
                       "cgroup-parent": f"/liftoff-box-{instance_id}"}, indent=2) + "\n"


# --- boxes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InstanceProfile:
    """What a box's metadata service answers at iam/security-credentials/ROLE: the role's credentials for this instance."""

    role: str
    access_key_id: str
    secret_access_key: str
    token: str
    expiration: str  # ISO 8601, UTC


# Boxes of one world may be created from several threads (a scale-out launches its hosts together).
_ADDRESSES = threading.Lock()


def boot_box(daemon: Daemon, world: BoxWorld, *, image: str, instance_id: str, local_ipv4: str, user_data: bytes,
             availability_zone: str, state_dir: Path, profile: InstanceProfile | None = None) -> Box:
    """Create the box for one instance, give it its user data and metadata, start it (not waiting)."""
    with _ADDRESSES:  # the address is the box's from here: another box created meanwhile must not take it
        address = _free_address(daemon, world)
        container = daemon.run(
            "create", "--name", f"{world.name}-{instance_id}", "--label", f"liftoff.harness={world.name}",
            "--hostname", instance_id, "--network", world.network, "--ip", address, *BOX_RUN_OPTIONS, image).stdout.strip()
        box = Box(instance_id=instance_id, container=container, address=address, local_ipv4=local_ipv4)
        world.boxes[instance_id] = box
    world.record(state_dir)
    instance = {"instance_id": instance_id, "region": world.region, "availability_zone": availability_zone,
                "local_ipv4": local_ipv4, "role": profile.role if profile else "liftoff-host"}
    if profile is not None:  # without one, the harness's identity (a box no stack launched: the box tests' own)
        instance["credentials"] = {"AccessKeyId": profile.access_key_id, "SecretAccessKey": profile.secret_access_key,
                                   "Token": profile.token, "Expiration": profile.expiration}
    files = {
        "etc/liftoff-box/instance.json": (json.dumps(instance).encode(), 0o644),
        "etc/liftoff-box/dnsmasq.conf": (dnsmasq_config(world).encode(), 0o644),
        "etc/docker/daemon.json": (nested_daemon_config(instance_id).encode(), 0o644),
        "etc/liftoff-box/ca.crt": ((Path(world.pki_dir) / "ca.crt").read_bytes(), 0o644),
        "var/lib/cloud/instance/user-data.txt": (user_data, 0o700),
    }
    daemon.run("cp", "-", f"{container}:/", input=_tar(files), text=False)
    daemon.run("start", container)
    box.address = _address(daemon, container, world.network)
    world.record(state_dir)
    return box


def _free_address(daemon: Daemon, world: BoxWorld) -> str:
    """An address of the box's own on the world's network, which it keeps across a reboot (a restart), as an instance
    keeps its private IP: left to Docker, a restarted container takes the next free address, and the load balancer
    stand-in and the harness would lose it once another box had come or gone. Taken from the top of the subnet down,
    away from the stand-ins' dynamic addresses at the bottom."""
    subnet = ipaddress.ip_network(_inspect(daemon, world.network, "{{(index .IPAM.Config 0).Subnet}}"))
    listed = _inspect(daemon, world.network, "{{range .Containers}}{{.IPv4Address}} {{end}}").split()
    taken = {world.gateway, *(box.address for box in world.boxes.values()), *(entry.split("/")[0] for entry in listed)}
    for number in range(int(subnet.broadcast_address) - 1, int(subnet.network_address), -1):
        address = str(ipaddress.ip_address(number))
        if address not in taken:
            return address
    raise BoxError(f"no free address left on {world.network} ({subnet})")


def wait_signalled(daemon: Daemon, box: Box, *, timeout: float = BOOT_TIMEOUT_SECONDS) -> dict:
    """Wait for the box's cfn-signal; a FAILURE or no signal in time raises with the user data's output."""
    deadline = time.monotonic() + timeout
    while True:
        # One exec that waits inside the box (a shell loop there costs next to nothing): an exec per poll from
        # here cost ~55 ms of CPU each (docker, dockerd, containerd, runc), ~3 CPU-s per box booted under a second's poll.
        left = max(1, int(deadline - time.monotonic()))
        waited = daemon.run("exec", box.container, "bash", "-c", _AWAIT_SIGNAL, "await-signal", str(left),
                            check=False, timeout=left + 30)
        shown = waited.stdout.strip()
        if shown.startswith("not ready: "):
            raise BoxError(f"host {box.instance_id} never ran its user data: {shown.removeprefix('not ready: ')}; "
                           f"its log:\n{boot_output(daemon, box)}")
        if waited.returncode == 0 and shown:
            signal_sent = json.loads(shown)
            if signal_sent["status"] != "SUCCESS":
                raise BoxError(f"host {box.instance_id} signalled {signal_sent['status']} (user data exited "
                               f"{signal_sent['exit_code']}); its user data output:\n{boot_output(daemon, box)}")
            return signal_sent
        if box.container not in daemon.running(box.container):
            raise BoxError(f"host {box.instance_id} stopped before it signalled; its log:\n"
                           + daemon.run("logs", "--tail", "30", box.container, check=False).stdout)
        if time.monotonic() > deadline:
            raise BoxError(f"host {box.instance_id} did not signal within {timeout:.0f} s (CloudFormation would fail "
                           f"the Auto Scaling group's creation); its user data output so far:\n{boot_output(daemon, box)}")
        time.sleep(1)  # the in-box wait counts whole seconds, or its exec failed: wait out what is left


# Run in the box by wait_signalled: the signal once there is one, else why the user data never ran (if it did not),
# within $1 seconds; exit 124 when neither came. cfn-signal writes its file whole (a rename).
_AWAIT_SIGNAL = f"""
deadline=$((SECONDS + $1))
while (( SECONDS < deadline )); do
    if [[ -e {SIGNAL_FILE} ]]; then cat {SIGNAL_FILE}; exit 0; fi
    if [[ -e {NOT_READY_FILE} ]]; then sed 's/^/not ready: /' {NOT_READY_FILE}; exit 0; fi
    sleep 0.25
done
exit 124
"""


def boot_output(daemon: Daemon, box: Box, lines: int = 40) -> str:
    shown = daemon.run("exec", box.container, "tail", "-n", str(lines), "/var/log/cloud-init-output.log", check=False)
    return shown.stdout.strip() or "(no output yet)"


def run_on_box(daemon: Daemon, box: Box, *command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """A command on the host as SSM Run Command would: as root, its exit status and output returned."""
    return daemon.run("exec", box.container, *command, check=False, timeout=timeout)


def active_tag(daemon: Daemon, box: Box) -> str:
    shown = run_on_box(daemon, box, "sed", "-n", "s/^IMAGE_TAG=//p", "/etc/liftoff/active.env", timeout=30)
    return shown.stdout.strip().splitlines()[-1] if shown.stdout.strip() else ""


# --- helpers -----------------------------------------------------------------------------------

def _start_endpoint_proxy(gateway: str, emulator_port: int, pki: Path, log: Path, *, port: int = 443,
                          health_file: Path | None = None) -> subprocess.Popen:
    taken = ports.listener_error(gateway, port)
    if taken is not None:
        raise BoxError(f"port {port} on the boxes' gateway {gateway} is taken ({taken}); stop what listens there")
    with open(log, "wb") as log_file:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "local.endpoints", "--bind", gateway, "--port", str(port),
             "--certificate", str(pki / "endpoints.pem"), "--emulator-port", str(emulator_port),
             *(["--health-file", str(health_file)] if health_file else [])],
            cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        # Answering over TLS with the world's certificate, not only accepting: what the boxes' first `aws` call needs.
        _wait(lambda: _answers_tls(gateway, port, pki / "ca.crt"), 30, "the AWS endpoint proxy did not answer",
              lambda: log.read_text())
    except BaseException:
        processes.stop(proxy.pid)
        raise
    return proxy


def _registry_answers(world: BoxWorld) -> bool:
    """The registry's API answers (200, or 401 asking for a login) on its published port: docker-proxy accepts
    connections on that port before the registry inside listens, so an accepted connection proves nothing."""
    return _answers_tls("127.0.0.1", world.registry_port, Path(world.pki_dir) / "ca.crt", path="/v2/")


def _answers_tls(host: str, port: int, ca: Path, *, path: str = "/") -> bool:
    """An HTTP answer (any status) over TLS with a certificate from the world's CA (names not checked: reached by address)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status > 0
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _wait(check: Callable[[], bool], timeout: float, failure: str, details: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BoxError(f"{failure} within {timeout:.0f} s:\n{details()[-2000:]}")
        time.sleep(0.2)


def _network_with_a_configured_subnet(daemon: Daemon, name: str) -> tuple[str, str]:
    """The world's network and its gateway, its subnet configured rather than only allocated, so that a box may ask
    for an address of its own (Docker takes `--ip` only on such a network): the subnet and gateway are the ones Docker
    picks from its free pools for a network of this name, asked for again by value. Another run's network may take
    them in between: then ask again."""
    labels = ("--label", f"liftoff.harness={name}")
    for _ in range(5):
        probe = daemon.run("network", "create", *labels, f"{name}-net").stdout.strip()
        subnet, gateway = _inspect(daemon, probe, "{{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}}").split()
        daemon.run("network", "rm", probe)
        created = daemon.run("network", "create", *labels, "--subnet", subnet, "--gateway", gateway, f"{name}-net", check=False)
        if created.returncode == 0:
            return created.stdout.strip(), gateway
    raise BoxError(f"no subnet for {name}-net: Docker's last answer: {created.stderr.strip()[-500:]}")


def _inspect(daemon: Daemon, network: str, template: str) -> str:
    return daemon.run("network", "inspect", "--format", template, network).stdout.strip()


def _address(daemon: Daemon, container: str, network: str) -> str:
    template = "{{range $name, $net := .NetworkSettings.Networks}}{{$net.IPAddress}}{{end}}"
    return daemon.run("inspect", "--format", template, container).stdout.strip()


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        # Parents a Debian root already has are left alone (a tar entry would reset their mode and times).
        existing = {"etc", "var", "var/lib"}
        directories = sorted({"/".join(Path(path).parts[:depth]) for path in files
                              for depth in range(1, len(Path(path).parts))} - existing)
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()

