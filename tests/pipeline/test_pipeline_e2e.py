"""The pipeline's own step scripts (pipeline/*.sh, the ones the workflows' `run:` steps call), end to end
against a moto_server holding the staging and production stages built from the app's templates.

tag -> [push: the seam, see below] -> wait for the scan -> staging: stage + activate -> production:
stage, (approval: the GitHub Environment's reviewers; here the test simply goes on) activate ->
rollback -> the ledger. The release tool runs unchanged with the emulator's stand-in runtime
(tests/helpers/emulated_liftoff.py), as `make deploy` does.

Not run here: `docker build` and `docker push` (pipeline/build.sh, the push half of push.sh). moto's ECR
has no registry endpoint to push layers to, so the image goes into it through the ECR API
(`local.aws.push_images`, what `make deploy` does) and everything after the push is real.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import boto3
import pytest

from config import load_config
from local import aws as local_aws
from local import emulator as emulators
from tests.helpers.emulated_stage import deploy_stage
from tests.helpers.synth import CDK_JSON, REPO

PIPELINE = REPO / "pipeline"
FIRST, RELEASE = "1.0.0", "1.4.2"


@pytest.fixture(scope="module")
def server(tmp_path_factory, emulator_assembly):
    """A moto_server on loopback with staging and production deployed (ImageTag 1.0.0), stopped at the end."""
    state = tmp_path_factory.mktemp("emulator")
    emulator = emulators.start(state)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    environment.update(local_aws.FAKE_ENVIRONMENT, AWS_ENDPOINT_URL=emulator.endpoint,
                       AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    try:
        with mock.patch.dict(os.environ, environment, clear=True):
            config = load_config(CDK_JSON)
            staging = deploy_stage(emulator_assembly, config.stage("staging"), image_tag=FIRST, push_tags=(FIRST,))
            deploy_stage(emulator_assembly, config.stage("production"), image_tag=FIRST)
        yield {"environment": environment, "repository": staging.repository_name, "endpoint": emulator.endpoint}
    finally:
        emulators.stop(emulator, state)


def session(server) -> local_aws.EndpointSession:
    return local_aws.EndpointSession(local_aws.fake_session(), server["endpoint"])


def step(server, tmp_path: Path, script: str, *args: str, extra_env: dict | None = None) -> tuple[int, dict, str, str]:
    """Run one pipeline script as a CI would: returns (exit code, step outputs, job summary, stderr)."""
    outputs, summary = tmp_path / f"{script}.outputs", tmp_path / f"{script}.summary"
    outputs.unlink(missing_ok=True)
    summary.unlink(missing_ok=True)
    environment = {
        **server["environment"],
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "LIFTOFF": f"{sys.executable} -m tests.helpers.emulated_liftoff",
        "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_RUN_ID": "4242", "GITHUB_REPOSITORY": "my-org/my-service", "GITHUB_SERVER_URL": "https://github.com",
        **(extra_env or {}),
    }
    result = subprocess.run([str(PIPELINE / script), *args], cwd=tmp_path, env=environment, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines()) if outputs.exists() else {}
    return result.returncode, values, summary.read_text() if summary.exists() else "", result.stderr


def ledger(server, stage: str) -> list[dict]:
    clients = session(server)
    table = local_aws.stack_outputs(clients, f"{stage}-data")["ReleaseLedgerTable"]
    items = clients.client("dynamodb").query(
        TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "RELEASE"}})["Items"]
    return [{key: next(iter(value.values())) for key, value in item.items()} for item in items]


def parameters(server, stage: str) -> dict[str, str]:
    return local_aws.stack_parameters(session(server), f"{stage}-service")


def test_tag_push_scan_stage_activate_approve_activate_rollback(server, tmp_path):
    code, out, _, err = step(server, tmp_path, "image-tag.sh", extra_env={"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": f"v{RELEASE}"})
    assert (code, out) == (0, {"version": RELEASE}), err
    version = out["version"]

    # The seam: what `docker push` would put into ECR, through the ECR API (scan started as scan-on-push does).
    [digest] = local_aws.push_images(session(server), server["repository"], [version])
    # push.sh finds the tag already there and does not push again (tags are immutable): no docker call.
    code, out, summary, err = step(server, tmp_path, "push.sh", "--stage", "staging", "--version", version)
    assert (code, out["digest"]) == (0, digest), err
    assert "not pushed again" in summary

    code, out, summary, err = step(server, tmp_path, "wait-scan.sh", "--stage", "staging", "--version", version, "--interval", "0")
    assert code == 0, err
    # moto's scan reports fixed sample findings; the step reports whatever the registry found.
    counts = session(server).client("ecr").describe_image_scan_findings(
        repositoryName=server["repository"], imageId={"imageTag": version})["imageScanFindings"]["findingSeverityCounts"]
    expected = ", ".join(f"{severity} {count}" for severity, count in counts.items() if count) or "none"
    assert out["scan_findings"] == expected and f"scan complete, findings: {expected}" in summary

    # staging: both gates automatically
    code, out, summary, err = step(server, tmp_path, "release.sh", "stage", "--stage", "staging", "--version", version)
    assert code == 0, err
    assert (out["result"], out["from"], out["to"]) == ("succeeded", FIRST, version)
    assert parameters(server, "staging")["StagedImageTag"] == version and parameters(server, "staging")["ImageTag"] == FIRST
    code, out, summary, err = step(server, tmp_path, "release.sh", "activate", "--stage", "staging", "--version", version)
    assert code == 0, err
    assert parameters(server, "staging")["ImageTag"] == version
    assert f"`{FIRST}` → `{version}`" in summary and out["release_id"] in summary and digest in summary
    assert "https://github.com/my-org/my-service/actions/runs/4242" in summary

    # production: the update gate automatically; the switch only after the environment's approval
    code, out, summary, err = step(server, tmp_path, "release.sh", "stage", "--stage", "production", "--version", version)
    assert code == 0, err
    assert (parameters(server, "production")["StagedImageTag"], parameters(server, "production")["ImageTag"]) == (version, FIRST)
    # ... a reviewer approves the `production` environment; the activation job starts ...
    code, out, summary, err = step(server, tmp_path, "release.sh", "activate", "--stage", "production", "--version", version)
    assert code == 0, err
    assert parameters(server, "production")["ImageTag"] == version

    # the rollback workflow: stage production, no version -> the previous one
    code, out, summary, err = step(server, tmp_path, "release.sh", "rollback", "--stage", "production")
    assert code == 0, err
    assert (out["from"], out["to"]) == (version, FIRST)
    assert parameters(server, "production")["ImageTag"] == FIRST

    entries = sorted(ledger(server, "production"), key=lambda entry: entry["sk"])
    assert [(e["gate"], e["from_version"], e["to_version"], e["result"]) for e in entries] == [
        ("stage", FIRST, version, "succeeded"),
        ("activate", FIRST, version, "succeeded"),
        ("rollback", version, FIRST, "succeeded"),
    ]
    assert {e["digest"] for e in entries if e["to_version"] == version} == {digest}
    assert [(e["gate"], e["result"]) for e in sorted(ledger(server, "staging"), key=lambda e: e["sk"])] == [
        ("stage", "succeeded"), ("activate", "succeeded")]


def test_a_gate_refusal_is_liftoffs_exit_code_and_changes_nothing(server, tmp_path):
    before = parameters(server, "production")
    entries = len(ledger(server, "production"))
    local_aws.push_images(session(server), server["repository"], ["2.0.0"])
    # Not staged on production: the activation gate refuses (3), the step fails with that code.
    code, out, summary, err = step(server, tmp_path, "release.sh", "activate", "--stage", "production", "--version", "2.0.0")
    assert code == 3, err
    assert out["result"] == "refused" and "refused by a gate (exit 3)" in summary
    assert parameters(server, "production") == before and len(ledger(server, "production")) == entries


def test_bad_input_exits_2_naming_the_value(server, tmp_path):
    code, _, summary, err = step(server, tmp_path, "release.sh", "deploy", "--stage", "staging")
    assert code == 2 and "gate 'deploy' is not allowed" in err
    code, _, _, err = step(server, tmp_path, "release.sh", "activate", "--stage", "nowhere", "--version", "1.0.0")
    assert code == 2, err
    code, _, _, err = step(server, tmp_path, "wait-scan.sh", "--stage", "staging", "--version", "9.9.9", "--interval", "0")
    assert code == 2 and "9.9.9 is not in" in err
    code, _, _, err = step(server, tmp_path, "image-tag.sh", extra_env={"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "latest"})
    assert code == 2 and "'latest' is not a release tag" in err


def test_a_branch_commit_is_tagged_with_its_sha(server, tmp_path):
    sha = "0123456789abcdef0123456789abcdef01234567"
    code, out, _, err = step(server, tmp_path, "image-tag.sh", extra_env={"GITHUB_REF_TYPE": "branch", "GITHUB_REF_NAME": "main", "GITHUB_SHA": sha})
    assert (code, out) == (0, {"version": sha}), err
