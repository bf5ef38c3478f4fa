"""The pipeline's own step scripts (pipeline/*.sh, the ones the workflows' `run:` steps call), end to end:
a real Docker daemon builds service/Dockerfile, a real OCI registry on loopback takes the push, and a
moto_server holds the staging and production stages built from the app's templates.

tag -> build -> push -> [registry -> emulated ECR] -> wait for the scan -> staging: stage + activate ->
production: stage, (approval: the GitHub Environment's reviewers; here the test simply goes on)
activate -> rollback -> the ledger, which records the digest the registry gave the real push.

The release tool runs unchanged with the emulator's stand-in runtime (tests/helpers/emulated_liftoff.py),
as `make deploy` does. Two stand-ins remain: moto's ECR has no registry endpoint, so the manifest the
real registry stored is put into it through the ECR API under the same digest
(tests/helpers/local_registry.py); and the image is built for this machine's architecture (the shipped
stages are arm64: on GitHub the build job runs on an arm64 runner; this machine cannot run arm64 code).

IAM is enforced (local/moto_iam.py): each step that names a stage runs as that stage's GitHub deploy role, created
in the emulator with the policies the app synthesizes for it (tests/helpers/deploy_roles.py) and assumed with
AssumeRoleWithWebIdentity as a GitHub job does. What each role's session called is recorded and must be allowed,
at run time and by the verdict (local/iam_verdict.py); the staging role is refused on production.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import platform
import re

import boto3
import pytest
from botocore.exceptions import ClientError

from config import load_config
from local import aws as local_aws
from local import emulator as emulators
from local import moto_iam
from local.iam_verdict import IMPLICITLY_DENIED, PLACEHOLDER_ID, Synthesized, judge
from release.flows.context import client_error_text
from tests.helpers import deploy_roles, local_registry
from tests.helpers.emulated_stage import deploy_stage
from tests.helpers.synth import CDK_JSON, REPO

pytestmark = pytest.mark.cost(minutes=0.5)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

PIPELINE = REPO / "pipeline"
FIRST, RELEASE = "1.0.0", "1.4.2"
HOST_PLATFORM = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}[platform.machine()]
STAGES = ("staging", "production")
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@pytest.fixture
def docker(docker_daemon, python_base_image):
    """The session's Docker daemon and the service's Python base image (tests/helpers/docker_fixtures.py)."""
    return {"daemon": docker_daemon, "python_image": python_base_image}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    started = local_registry.start(tmp_path_factory.mktemp("registry"))
    try:
        yield started
    finally:
        local_registry.stop(started)


@pytest.fixture(scope="module")
def server(tmp_path_factory, emulator_assembly, synth_variant):
    """A moto_server on loopback with staging and production deployed (ImageTag 1.0.0) and each stage's GitHub deploy
    role in it as synthesized (account and region the emulator's) with a job's credentials for it; stopped at the end."""
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
        synthesized = Synthesized(synth_variant(deploy_roles.liftoff_context()).templates,
                                  account=local_aws.EMULATED_ACCOUNT, region=deploy_roles.REGION)
        admin = local_aws.EndpointSession(local_aws.fake_session(), emulator.endpoint)
        roles = {stage: deploy_roles.create(admin, synthesized, stage) for stage in STAGES}
        credentials = {stage: deploy_roles.web_identity_environment(admin, role.arn) for stage, role in roles.items()}
        yield {"environment": environment, "repository": staging.repository_name, "endpoint": emulator.endpoint,
               "roles": roles, "credentials": credentials}
    finally:
        emulators.stop(emulator, state)


def session(server) -> local_aws.EndpointSession:
    return local_aws.EndpointSession(local_aws.fake_session(), server["endpoint"])


def step(server, tmp_path: Path, script: str, *args: str, extra_env: dict | None = None,
         timeout: float = 120, as_role: str | None = None) -> tuple[int, dict, str, str]:
    """Run one pipeline script as a CI would: returns (exit code, step outputs, job summary, stderr).

    The step holds the credentials of the deploy role of the stage it names (`--stage`), or of `as_role`'s; one that
    names no stage (or one without a role) holds none, as a job that assumed no role."""
    outputs, summary = tmp_path / f"{script}.outputs", tmp_path / f"{script}.summary"
    outputs.unlink(missing_ok=True)
    summary.unlink(missing_ok=True)
    role = as_role or (args[args.index("--stage") + 1] if "--stage" in args else None)
    environment = {
        **{key: value for key, value in server["environment"].items() if key not in CREDENTIAL_VARIABLES},
        **server["credentials"].get(role, {}),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "LIFTOFF": f"{sys.executable} -m tests.helpers.emulated_liftoff",
        "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_RUN_ID": "4242", "GITHUB_REPOSITORY": "my-org/my-service", "GITHUB_SERVER_URL": "https://github.com",
        **(extra_env or {}),
    }
    result = subprocess.run([str(PIPELINE / script), *args], cwd=tmp_path, env=environment, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=timeout)
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines()) if outputs.exists() else {}
    return result.returncode, values, summary.read_text() if summary.exists() else "", result.stderr


def role_session(server, stage: str) -> local_aws.EndpointSession:
    """A boto3 session holding the credentials the stage's deploy-role steps hold."""
    credentials = server["credentials"][stage]
    return local_aws.EndpointSession(boto3.Session(
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"], aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials["AWS_SESSION_TOKEN"], region_name=deploy_roles.REGION), server["endpoint"])


def ledger(server, stage: str) -> list[dict]:
    clients = session(server)
    table = local_aws.stack_outputs(clients, f"{stage}-data")["ReleaseLedgerTable"]
    items = clients.client("dynamodb").query(
        TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "RELEASE"}})["Items"]
    return [{key: next(iter(value.values())) for key, value in item.items()} for item in items]


def parameters(server, stage: str) -> dict[str, str]:
    return local_aws.stack_parameters(session(server), f"{stage}-service")


def calls_of(server, stage: str) -> list[dict]:
    """What the stage's deploy role's session called so far, as the emulator recorded it."""
    principal = deploy_roles.session_principal(server["roles"][stage].arn)
    return [call for call in moto_iam.recorded_calls(server["endpoint"]) if call["principal"] == principal]


def verdicts(server, stage: str, calls: list[dict]) -> list:
    role = server["roles"][stage]
    return judge(calls, {role.arn: role.policies})


def test_tag_build_push_scan_stage_activate_approve_activate_rollback(server, docker, registry, tmp_path):
    code, out, _, err = step(server, tmp_path, "image-tag.sh", extra_env={"GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": f"v{RELEASE}"})
    assert (code, out) == (0, {"version": RELEASE}), err
    version = out["version"]
    daemon, repository = docker["daemon"], server["repository"]
    docker_env = {"DOCKER_HOST": daemon.host, "PYTHON_IMAGE": docker["python_image"]}
    remote = f"{registry.host}/{repository}:{version}"
    try:
        code, out, summary, err = step(server, tmp_path, "build.sh", "--version", version, "--platform", HOST_PLATFORM,
                                       extra_env=docker_env, timeout=900)
        assert (code, out) == (0, {"image": f"liftoff-service:{version}"}), err
        labels = json.loads(daemon.run("image", "inspect", "--format", "{{json .Config.Labels}}", out["image"]).stdout)
        assert labels["org.opencontainers.image.version"] == version and f"| platform | {HOST_PLATFORM} |" in summary
        # The schema contract, from service/migrations (the Dockerfile refuses values that disagree with the files).
        assert {k: v for k, v in labels.items() if k.startswith("io.liftoff.")} == {
            "io.liftoff.release": "1.1.0", "io.liftoff.schema.head": "0003_require_note_title",
            "io.liftoff.schema.requires": "0002_add_note_title", "io.liftoff.schema.contracts": "0003_require_note_title:1.0.0"}

        code, out, summary, err = step(server, tmp_path, "push.sh", "--stage", "staging", "--version", version,
                                       "--registry", registry.host, extra_env=docker_env, timeout=300)
        assert code == 0, err
        digest = out["digest"]
        assert local_registry.manifest(registry, repository, version)[2] == digest  # what the registry stored
        assert remote in summary and digest in summary
    finally:
        daemon.run("image", "rm", f"liftoff-service:{version}", remote, check=False)

    # The one stand-in step: the stored manifest into the emulator's ECR under the same digest, as the staging role (the
    # job's registry login is ecr:GetAuthorizationToken; ECR authorizes a manifest PUT as ecr:PutImage). The scan
    # AWS starts on push is AWS's own doing: the harness starts it.
    pusher = role_session(server, "staging").client("ecr")
    pusher.get_authorization_token()
    text, media_type, stored = local_registry.manifest(registry, repository, version)
    pusher.put_image(repositoryName=repository, imageManifest=text, imageManifestMediaType=media_type, imageTag=version,
                     imageDigest=stored)
    session(server).client("ecr").start_image_scan(repositoryName=repository, imageId={"imageTag": version})
    assert stored == digest
    # A re-run of the same commit finds the tag in ECR and does not push again (tags are immutable).
    code, out, summary, err = step(server, tmp_path, "push.sh", "--stage", "staging", "--version", version, "--registry", registry.host)
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
    # --no-watch: moto never evaluates an alarm, so the bake window (300 s on production) would only pass
    # the time; the watch and its automatic rollback are tested in tests/release/test_bake.py.
    code, out, summary, err = step(server, tmp_path, "release.sh", "activate", "--stage", "production", "--version", version,
                                   "--no-watch")
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

    # Every step ran as its stage's deploy role, with the synthesized policies and nothing more: nothing refused at run
    # time, the gates' own UpdateStack on the stage's service stack among the calls, and the verdict agrees.
    principals = {call["principal"] for call in moto_iam.recorded_calls(server["endpoint"])}
    assert principals == {deploy_roles.session_principal(role.arn) for role in server["roles"].values()}
    for stage in STAGES:
        calls = calls_of(server, stage)
        assert [call for call in calls if not call["allowed"]] == [], stage
        updated = {call["params"].get("StackName") for call in calls if call["action"] == "cloudformation:UpdateStack"}
        assert updated == {f"{stage}-service"}, stage
        assert {"ecr:DescribeImages", "dynamodb:PutItem", "cloudformation:DescribeStacks"} <= {call["action"] for call in calls}
        assert [str(verdict) for verdict in verdicts(server, stage, calls) if not verdict.allowed] == [], stage
    # The staging job's registry login and the manifest's push (the one call of the push this test makes through ECR).
    assert {"ecr:GetAuthorizationToken", "ecr:PutImage"} <= {call["action"] for call in calls_of(server, "staging")}


def test_a_gate_refusal_is_liftoffs_exit_code_and_changes_nothing(server, tmp_path):
    before = parameters(server, "production")
    entries = len(ledger(server, "production"))
    local_aws.push_images(session(server), server["repository"], ["2.0.0"])
    # Not staged on production: the activation gate refuses (3), the step fails with that code.
    code, out, summary, err = step(server, tmp_path, "release.sh", "activate", "--stage", "production", "--version", "2.0.0")
    assert code == 3, err
    assert out["result"] == "refused" and "refused by a gate (exit 3)" in summary
    assert parameters(server, "production") == before
    # The ledger records the refusal (who, what was asked, why), and nothing else (issue 9).
    after = sorted(ledger(server, "production"), key=lambda entry: entry["sk"])
    assert len(after) == entries + 1
    assert (after[-1]["gate"], after[-1]["to_version"], after[-1]["result"]) == ("activate", "2.0.0", "refused")


def test_the_staging_role_may_not_release_to_production(server, tmp_path):
    before, entries = parameters(server, "production"), len(ledger(server, "production"))
    code, out, summary, err = step(server, tmp_path, "release.sh", "stage", "--stage", "production", "--version", FIRST,
                                   as_role="staging")
    assert code == 4, err
    principal = deploy_roles.session_principal(server["roles"]["staging"].arn)
    # release.cli: "access denied: PRINCIPAL may not call ACTION on RESOURCE (CODE)", in the job summary's message row.
    denial = re.search(rf"access denied: {re.escape(principal)} may not call (\S+) on (\S+) \((\w+)\)", summary)
    assert denial, (summary, err)
    action, resource, _ = denial.groups()
    # The first production stack it reads (the stage's data stack, for its ledger) is refused, before anything changed.
    stack = f"arn:aws:cloudformation:us-east-1:{local_aws.EMULATED_ACCOUNT}:stack/production-{{}}/{PLACEHOLDER_ID}"
    assert (action, resource) == ("cloudformation:DescribeStacks", stack.format("data"))
    # The gate itself, had the step got that far: the staging role's UpdateStack on production's service stack.
    with pytest.raises(ClientError) as update:
        role_session(server, "staging").client("cloudformation").update_stack(
            StackName="production-service", UsePreviousTemplate=True,
            Parameters=[{"ParameterKey": "StagedImageTag", "ParameterValue": FIRST}])
    assert client_error_text(update.value) == (
        f"access denied: {principal} may not call cloudformation:UpdateStack on {stack.format('service')} (AccessDenied)")
    assert parameters(server, "production") == before and len(ledger(server, "production")) == entries
    # The emulator refused both, recorded them, and the verdict denies them too.
    refused = [call for call in calls_of(server, "staging") if not call["allowed"]]
    assert [(call["action"], call["resources"]) for call in refused] == [
        (action, [resource]), ("cloudformation:UpdateStack", [stack.format("service")])]
    assert [verdict.decision for verdict in verdicts(server, "staging", refused)] == [IMPLICITLY_DENIED] * 2


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
