"""The emulator's stand-in for SSM Run Command on the host boxes, and the release tool's runtime that uses it.

moto records `send_command` and runs nothing (its invocation reports Success with no output). On the host
boxes (local/boxes.py, real systemd hosts booted from the launch template's user data) this stand-in does
what the SSM agent does with a Command document: it reads the document the stack created (from the
emulator's SSM), checks each parameter against the document's `allowedPattern` (a value that does not
match is refused before any shell sees it, as SSM refuses it), substitutes `{{Name}}` in the document's
`runCommand` and runs it as root on that one host, returning its exit code and output.

`BoxesRuntime` is the emulator's release-tool adapter (`local.runtime.EmulatedRuntime`) with two reads
made real for the boxes: Run Command (this stand-in) and an image's config blob (from the real registry
standing in for ECR, where the pushed images' labels are). Everything else is the emulator's.
"""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from local import boxes
from local.docker import DockerError
from local.runtime import EmulatedRuntime
from release.adapters.schema_aws import SchemaAdapter

if TYPE_CHECKING:  # local.hosts runs the fleet's canary through this stand-in
    from local.hosts import StageHosts


class RunCommandRefused(Exception):
    """A parameter SSM would refuse (not declared, or not matching its allowedPattern)."""


class RunCommandStandIn:
    def __init__(self, hosts: StageHosts):
        self.hosts = hosts
        self.runs: list[tuple[str, str, dict]] = []

    def render(self, document: str, parameters: dict[str, list[str]]) -> list[str]:
        content = self.hosts.session.client("ssm").get_document(Name=document)["Content"]
        content = json.loads(content) if isinstance(content, str) else content
        declared = content.get("parameters", {})
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise RunCommandRefused(f"document {document} declares no parameter {unknown[0]}")
        values = {}
        for name, spec in declared.items():
            given = parameters.get(name)
            if given is None and "default" not in spec:
                raise RunCommandRefused(f"document {document} needs parameter {name}")
            value = given[0] if given else spec.get("default", "")
            if "allowedPattern" in spec and not re.fullmatch(spec["allowedPattern"], value):
                raise RunCommandRefused(f"parameter {name}={value!r} does not match {spec['allowedPattern']}")
            values[name] = value
        commands = []
        for step in content["mainSteps"]:
            for command in step["inputs"]["runCommand"]:
                commands.append(re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values[m.group(1)], command))
        return commands

    def run_on(self, instances: list[str], document: str, parameters: dict[str, list[str]], *,
               timeout: float) -> dict[str, tuple[int | None, str, str]]:
        """One command sent to several instances: each host's agent runs it at once, independently of the others.
        A parameter SSM refuses is refused before any host runs anything, as SSM refuses the whole command."""
        script = "\n".join(["set -e", *self.render(document, parameters)])

        def on_host(instance: str) -> tuple[int | None, str, str]:
            self.runs.append((instance, document, parameters))
            where = f"host {instance} (Run Command stand-in, document {document})"
            try:
                result = boxes.run_on_box(self.hosts.daemon, self.hosts.world.boxes[instance], "bash", "-c", script,
                                          timeout=timeout)
            except DockerError:
                # The wait ran out, as the real adapter's does: no exit code, and the command goes on on the host
                # (docker exec's process outlives its client, as an SSM invocation outlives whoever polls it).
                return None, "", where
            return result.returncode, result.stdout + result.stderr, where

        with ThreadPoolExecutor(max_workers=max(1, len(instances)), thread_name_prefix="run-command") as pool:
            return dict(zip(instances, pool.map(on_host, instances)))


class BoxesRuntime(EmulatedRuntime):
    def __init__(self, *, hosts: StageHosts, **kwargs):
        super().__init__(**kwargs)
        self.hosts = hosts
        self.run_command = RunCommandStandIn(hosts)

    def run_one_off(self, outputs, **kwargs):
        # The real adapter's path (one in-service host, the stack's migrate document), not the emulator's refusal.
        return SchemaAdapter.run_one_off(self, outputs, **kwargs)

    def send_to_hosts(self, instances, document, parameters, *, timeout, poll, sleep, monotonic):
        return self.run_command.run_on(instances, document, parameters, timeout=timeout)

    def download_layer(self, repository: str, digest: str) -> bytes | None:
        return boxes.registry_blob(self.hosts.world, repository, digest)
