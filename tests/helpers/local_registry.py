"""A real OCI registry on loopback for the pipeline's push (Debian's `docker-registry`), and the one step
that links it to the emulator's ECR.

moto's ECR answers the ECR API but has no registry endpoint, so `docker push` cannot reach it. The
pipeline's push goes to this registry for real; `copy_to_ecr` then puts the manifest the registry
stored into the emulator's ECR under the registry's own digest (ECR's PutImage takes both), and
starts its scan as ECR's scan-on-push would. What liftoff, the gates and the ledger then see is the
image that was really built and pushed, by its real digest.

    start(state_dir) -> Registry(pid, port, host)      stop(registry)
    copy_to_ecr(registry, session, repository, tag) -> digest
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from local.emulator import free_port

MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json")
START_TIMEOUT_SECONDS = 15.0


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Registry:
    pid: int
    port: int
    log: Path

    @property
    def host(self) -> str:
        # docker pushes to a loopback registry over plain HTTP without any daemon setting.
        return f"localhost:{self.port}"


def start(state_dir: Path) -> Registry:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RegistryError("no `docker-registry` on PATH: apt-get install docker-registry")
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = state_dir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {state_dir / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "log:\n  level: warn\n"
    )
    log = state_dir / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    registry = Registry(pid=process.pid, port=port, log=log)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                return registry
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(registry)
                raise RegistryError(f"docker-registry did not answer on port {port}:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def stop(registry: Registry) -> None:
    try:
        os.kill(registry.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.waitpid(registry.pid, os.WNOHANG)[0] == registry.pid:
                return
        except ChildProcessError:
            return
        time.sleep(0.05)
    os.kill(registry.pid, signal.SIGKILL)
    os.waitpid(registry.pid, 0)


def manifest(registry: Registry, repository: str, tag: str) -> tuple[str, str, str]:
    """(manifest text, media type, digest) as the registry stored them."""
    request = urllib.request.Request(f"http://127.0.0.1:{registry.port}/v2/{repository}/manifests/{tag}",
                                     headers={"Accept": ", ".join(MANIFEST_TYPES)})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode(), response.headers["Content-Type"], response.headers["Docker-Content-Digest"]


def copy_to_ecr(registry: Registry, session, repository: str, tag: str) -> str:
    text, media_type, digest = manifest(registry, repository, tag)
    ecr = session.client("ecr")
    ecr.put_image(repositoryName=repository, imageManifest=text, imageManifestMediaType=media_type,
                  imageTag=tag, imageDigest=digest)
    ecr.start_image_scan(repositoryName=repository, imageId={"imageTag": tag})
    return digest
