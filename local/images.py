"""Images for the local harness: the service image built for real, and the host box image.

The service image is `service/Dockerfile`, built unchanged with `--build-arg PYTHON_IMAGE=...`:
- `registry`: the Dockerfile's own base (python:3.11-slim-bookworm) pulled from the public registry;
- `local`: a Python base made here from the Debian archive with mmdebstrap (Debian's python3 is 3.11),
  trusting this machine's extra CA certificates so pip inside the build passes a TLS-intercepting proxy;
- `auto` (the default): `registry` when the pull works, else `local`, saying so in one line.

Root filesystems made with mmdebstrap become images tagged by what they are made from (suite, packages, options):
a daemon that has one never needs it made again, whichever checkout asks, so only the first run on a machine pays for
them (a minute or two). The tar files mmdebstrap writes are kept under the checkout's `.cache/images/` too.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from local.docker import Daemon, DockerError

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / ".cache" / "images"
SERVICE_DIR = REPO / "service"
BOX_DIR = Path(__file__).parent / "box"
REGISTRY_PYTHON_IMAGE = "python:3.11-slim-bookworm"
BASE_CHOICES = ("auto", "registry", "local")
SUITE = "bookworm"
PYTHON_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# The Python base is pushed to every box world's registry and pulled by every box, so its bytes are paid for per
# host: made as Debian's own slim images are (no documentation, manual pages or translations; the copyright files
# kept), and merged-/usr set up by mmdebstrap's hook instead of the usrmerge package, which brings perl (~50 MB).
SLIM_OPTIONS = (
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    *(f"--dpkgopt=path-exclude=/usr/share/{folder}/*" for folder in ("doc", "man", "groff", "info", "lintian", "locale")),
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
)
# What an AL2023 host gets from dnf in user data (docker, jq, cfn-bootstrap; haproxy and socat for slots) or has by default (curl, the
# AWS CLI, systemd, iproute), plus what the stand-ins need: dnsmasq (the box's DNS), python3 (IMDS),
# postgresql and docker-registry (the RDS and ECR stand-in containers run from this same image).
BOX_PACKAGES = ("systemd", "systemd-sysv", "dbus", "docker.io", "iptables", "jq", "curl", "ca-certificates",
                "python3", "iproute2", "procps", "awscli", "dnsmasq-base", "postgresql", "docker-registry",
                "util-linux", "openssl", "less", "haproxy", "socat")
SERVICE_BUILD_IMAGE = "liftoff/service:build"
BOX_IMAGE = "liftoff/host-box:build"
RELEASE_IMAGE = "liftoff/service"
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
# mmdebstrap runs this inside the new root filesystem's host side: copy the machine's extra CAs in.
CA_HOOK = """#!/bin/sh
set -e
for certificate in {ca_dir}/*.crt; do
    [ -e "$certificate" ] && cp "$certificate" "$1/usr/local/share/ca-certificates/"
done
chroot "$1" update-ca-certificates >/dev/null 2>&1
"""

Say = Callable[[str], None]


class ImageError(DockerError):
    """An image could not be made; the message names the step and shows its output."""


def rootfs_key(packages: tuple[str, ...], options: tuple[str, ...] = ()) -> str:
    """What a root filesystem is made from (suite, packages, options, the CA hook), as a short digest."""
    return hashlib.sha256(" ".join((SUITE, *packages, *options)).encode() + CA_HOOK.encode()).hexdigest()[:12]


def rootfs_tar(name: str, packages: tuple[str, ...], *, options: tuple[str, ...] = (), cache_dir: Path = CACHE_DIR) -> Path:
    """A Debian root filesystem with `packages`, made once by mmdebstrap and cached by its package list and options."""
    tar = cache_dir / f"{name}-{SUITE}-{rootfs_key(packages, options)}.tar"
    if tar.exists():
        return tar
    if shutil.which("mmdebstrap") is None:
        raise ImageError(f"no cached {tar.name} and no mmdebstrap to make it: apt-get install mmdebstrap")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        hook = Path(scratch) / "ca-hook.sh"
        hook.write_text(CA_HOOK.format(ca_dir=EXTRA_CA_DIR))
        hook.chmod(0o755)
        partial = Path(scratch) / tar.name
        result = subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(packages)}", *options,
             f"--customize-hook={hook}", SUITE, str(partial)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ImageError(f"mmdebstrap of {name} ({SUITE}) exited {result.returncode}:\n{result.stderr.strip()[-2000:]}")
        # Moved into place only when whole: an interrupted run never leaves a truncated cache entry.
        shutil.move(partial, tar)
    return tar


def tree_digest(*roots: Path) -> str:
    """A short digest of the files under `roots` (paths and contents): an image tag that changes with its
    inputs, so two checkouts sharing one Docker daemon never run each other's builds."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def has_image(daemon: Daemon, image: str) -> bool:
    return daemon.run("image", "inspect", image, check=False, timeout=30).returncode == 0


def imported_rootfs(daemon: Daemon, name: str, packages: tuple[str, ...], *, options: tuple[str, ...] = (),
                    cache_dir: Path = CACHE_DIR) -> str:
    """The root filesystem as an image, tagged by what it is made from. The daemon's images outlive a checkout (another
    clone, an earlier run made it): only an image the daemon lacks needs the tar, which mmdebstrap makes once per
    checkout (~1 GB for the box, a minute or two of downloads and CPU)."""
    image = f"liftoff/{name}:{rootfs_key(packages, options)}"
    if not has_image(daemon, image):
        tar = rootfs_tar(name, packages, options=options, cache_dir=cache_dir)
        daemon.run("import", "--change", 'CMD ["/bin/bash"]', str(tar), image, timeout=600)
    return image


def python_base(daemon: Daemon, choice: str = "auto", *, say: Say = print, cache_dir: Path = CACHE_DIR) -> str:
    """The image `service/Dockerfile` builds on, per `choice` (see the module docstring)."""
    if choice not in BASE_CHOICES:
        raise ImageError(f"base image choice {choice!r} is not one of {', '.join(BASE_CHOICES)}")
    if choice in ("auto", "registry"):
        pulled = daemon.run("pull", "--quiet", REGISTRY_PYTHON_IMAGE, check=False, timeout=120)
        if pulled.returncode == 0:
            return REGISTRY_PYTHON_IMAGE
        reason = (pulled.stderr.strip().splitlines() or ["no output"])[-1]
        if choice == "registry":
            raise ImageError(f"cannot pull {REGISTRY_PYTHON_IMAGE}: {reason}")
        say(f"{REGISTRY_PYTHON_IMAGE} cannot be pulled ({reason}); using a Python base made from the Debian archive")
    return imported_rootfs(daemon, "python-base", PYTHON_PACKAGES, options=SLIM_OPTIONS, cache_dir=cache_dir)


def schema_build_args() -> list[str]:
    """The schema-contract labels' build arguments, from the migration files (the Dockerfile verifies them)."""
    result = subprocess.run([sys.executable, "-m", "liftoff_service.schema", "build-args"], cwd=SERVICE_DIR,
                            env={**os.environ, "PYTHONPATH": str(SERVICE_DIR)}, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ImageError(f"reading the schema contract from service/migrations failed: {result.stderr.strip()}")
    return [part for line in result.stdout.splitlines() for part in ("--build-arg", line)]


def build_service_image(daemon: Daemon, python_image: str, *, tag: str | None = None) -> str:
    """`service/Dockerfile`, built unchanged but for its PYTHON_IMAGE build argument (tagged by its inputs)."""
    tag = tag or f"{SERVICE_BUILD_IMAGE}-{tree_digest(SERVICE_DIR)}"
    try:
        daemon.run("build", "--quiet", "--build-arg", f"PYTHON_IMAGE={python_image}", *schema_build_args(), "--tag", tag,
                   str(SERVICE_DIR), timeout=900)
    except DockerError as error:
        raise ImageError(f"building service/Dockerfile on {python_image} failed: {error}") from None
    return tag


# A test release's warm-up (release_image's warm_up_seconds): Python imports sitecustomize from the image's
# PYTHONPATH (/srv/service) at every start, so the service's own code is left as it is.
WARM_UP_HOOK = """# Test image only (local/images.py): a release that is live at once but not ready for its first seconds.
import json
import time

from liftoff_service import web

WARM_UP_SECONDS = {seconds}
_STARTED = time.monotonic()
_serve = web.ServiceApp.__call__


def _warming_up(self, environ, start_response):
    if environ.get("PATH_INFO") != "/healthz" and time.monotonic() - _STARTED < WARM_UP_SECONDS:
        body = json.dumps({{"error": "warming up", "status": "unavailable"}}).encode()
        start_response("503 Service Unavailable", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    return _serve(self, environ, start_response)


web.ServiceApp.__call__ = _warming_up
"""


def release_image(daemon: Daemon, built: str, version: str, *, never_starts: bool = False,
                  warm_up_seconds: int = 0) -> str:
    """The built image as release `version`: a label and a one-file layer more, so each release has its own
    manifest and layers (ECR, and the emulator's ECR, derive the digest from them), as separate builds would.

    `never_starts`: a bad release for tests and benchmarks; its `migrate` works, but its default command
    is one the service refuses, so the container exits at every start and never answers a health check.
    `warm_up_seconds`: a slow starter (a cache warm-up, a connection pool filling) for tests; `/healthz` answers
    at once, but `/readyz` and every other request answer 503 for the first `warm_up_seconds` of each start."""
    image = f"{RELEASE_IMAGE}:{version}-{built.rsplit('-', 1)[-1]}{f'-warm{warm_up_seconds}' if warm_up_seconds else ''}"
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "RELEASE").write_text(f"{version}\n")
        dockerfile = f"FROM {built}\nLABEL org.opencontainers.image.version={version}\nCOPY RELEASE /srv/service/RELEASE\n"
        if re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version):
            # The release the schema decisions see (the built image's own label names service/VERSION).
            dockerfile += f"LABEL io.liftoff.release={version}\n"
        if never_starts:
            dockerfile += 'CMD ["no-such-command"]\n'
        if warm_up_seconds:
            (Path(context) / "sitecustomize.py").write_text(WARM_UP_HOOK.format(seconds=int(warm_up_seconds)))
            dockerfile += "COPY sitecustomize.py /srv/service/sitecustomize.py\n"
        (Path(context) / "Dockerfile").write_text(dockerfile)
        daemon.run("build", "--quiet", "--tag", image, context, timeout=300)
    return image


def box_image(daemon: Daemon, *, cache_dir: Path = CACHE_DIR) -> str:
    """The host box image: the box root filesystem plus local/box/ (stand-ins and their units)."""
    rootfs = imported_rootfs(daemon, "box-rootfs", BOX_PACKAGES, cache_dir=cache_dir)
    image = f"{BOX_IMAGE}-{tree_digest(BOX_DIR)}"
    try:
        daemon.run("build", "--quiet", "--build-arg", f"ROOTFS_IMAGE={rootfs}", "--tag", image, str(BOX_DIR), timeout=600)
    except DockerError as error:
        raise ImageError(f"building the host box image (local/box/) failed: {error}") from None
    return image
