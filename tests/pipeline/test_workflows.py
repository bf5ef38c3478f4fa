"""The GitHub Actions workflows: linted by actionlint and zizmor, wired only to pipeline/ scripts, and
consistent with the trust cdk.json gives each stage's deploy role."""
from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config import parse_config
from tests.helpers.synth import REPO, cdk_context

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
ACTIONLINT, ZIZMOR = BIN / "actionlint", BIN / "zizmor"


def load(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as true
    return workflow


def jobs(path: Path) -> dict[str, dict]:
    return load(path)["jobs"]


def run_steps(path: Path) -> list[tuple[str, str]]:
    return [(name, step["run"]) for name, job in jobs(path).items() for step in job["steps"] if "run" in step]


def test_the_workflows_exist():
    assert [path.name for path in WORKFLOWS] == ["release.yml", "rollback.yml"]


def actionlint(*paths: Path) -> subprocess.CompletedProcess:
    # shellcheck on PATH: actionlint also checks every run: script with it.
    assert shutil.which("shellcheck"), "shellcheck is needed for actionlint's run: checks (apt-get install shellcheck)"
    return subprocess.run([str(ACTIONLINT), "-no-color", *map(str, paths)], capture_output=True, text=True, cwd=REPO)


def zizmor(*paths: Path) -> subprocess.CompletedProcess:
    # --offline: no GitHub API here; pedantic: the strictest persona, code smells included.
    return subprocess.run([str(ZIZMOR), "--offline", "--persona=pedantic", "--format=plain", *map(str, paths)],
                          capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes(path):
    result = actionlint(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_zizmor_passes(path):
    result = zizmor(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linters_fail_a_broken_workflow(tmp_path):
    # Proves both linters really read the files: an expression pasted into a shell script (injection),
    # one naming an input that does not exist, and a checkout that keeps its token on disk.
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    text = (REPO / ".github" / "workflows" / "rollback.yml").read_text()
    text = text.replace('pipeline/release.sh rollback --stage "$STAGE" --version "$VERSION"',
                        'pipeline/release.sh rollback --stage ${{ inputs.stage }} --version ${{ inputs.versoin }}')
    text = text.replace("        with:\n          persist-credentials: false\n", "")
    broken.write_text(text)
    linted = actionlint(broken)
    assert linted.returncode == 1 and 'property "versoin" is not defined' in linted.stdout
    audited = zizmor(broken)
    assert audited.returncode != 0
    assert "template-injection" in audited.stdout and "artipacked" in audited.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_step_is_one_pipeline_script(path):
    # The workflows hold no logic of their own: the same scripts run in the end-to-end test and in other CIs.
    for job, script in run_steps(path):
        words = shlex.split(script.strip())
        command = words[1] if words[0] == "python3" else words[0]
        assert "\n" not in script.strip() and command.startswith("pipeline/"), f"{path.name} {job}: {script!r}"
        assert (REPO / command).is_file(), f"{path.name} {job}: {command} does not exist"
        assert "${{" not in script, f"{path.name} {job}: expressions go through env:, never into the script text"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_commits_and_permissions_start_empty(path):
    workflow = load(path)
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), f"{name}: {step['uses']} is not pinned to a commit"
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
        assumes_role = any(step.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for step in job["steps"])
        assert (job["permissions"].get("id-token") == "write") == assumes_role, f"{name}: id-token only where a role is assumed"


def test_production_switches_only_in_the_reviewed_environment():
    release = jobs(REPO / ".github" / "workflows" / "release.yml")
    activations = {name: job for name, job in release.items()
                   if any("release.sh activate" in step.get("run", "") and "production" in step.get("run", "") for step in job["steps"])}
    assert list(activations) == ["production"]
    assert activations["production"]["environment"] == "production"
    assert set(activations["production"]["needs"]) >= {"staging", "production-update"}
    update = release["production-update"]
    assert update["environment"] == "production-update"
    assert [step["run"] for step in update["steps"] if "run" in step][-1].startswith("pipeline/release.sh stage --stage production")
    # Staging needs no person: both of its gates run in one job.
    staging_runs = [step["run"] for step in release["staging"]["steps"] if "run" in step]
    assert [run.split()[1] for run in staging_runs if run.startswith("pipeline/release.sh")] == ["stage", "activate"]


def test_each_job_is_one_the_stages_role_trusts():
    """Every job that assumes a stage's role runs as a `sub` the shipped cdk.json lets that role accept."""
    github = cdk_context()["liftoff"]["github"]["stages"]
    release_refs = load(REPO / ".github" / "workflows" / "release.yml")["on"]["push"]
    for path in WORKFLOWS:
        for name, job in jobs(path).items():
            targets = [shlex.split(step["run"])[-1] for step in job["steps"] if step.get("run", "").startswith("python3 pipeline/target.py")]
            if not any(step.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for step in job["steps"]):
                continue
            assert all("--require-enabled" in step.get("run", "") for step in job["steps"] if "target.py" in step.get("run", "")), name
            [target] = targets
            stages = load(path)["on"]["workflow_dispatch"]["inputs"]["stage"]["options"] if target == "$STAGE" else [target]
            for stage in stages:
                trusted = github[stage]
                if "environment" in job:
                    environment = job["environment"].replace("${{ inputs.stage }}", stage)
                    assert environment in trusted.get("environments", []), f"{path.name} {name}: {stage} role does not trust {environment}"
                else:  # no environment: GitHub puts the ref into `sub`
                    assert set(release_refs["branches"]) <= set(trusted.get("branches", [])), f"{path.name} {name}"
                    assert set(release_refs["tags"]) <= set(trusted.get("tags", [])), f"{path.name} {name}"


def test_pipeline_scripts_pass_shellcheck():
    scripts = sorted((REPO / "pipeline").glob("*.sh"))
    assert len(scripts) >= 6
    result = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout


# --- pipeline/target.py: where a job goes, from cdk.json ------------------------------------------

def target(tmp_path: Path, github: dict | None, *arguments: str) -> subprocess.CompletedProcess:
    context = copy.deepcopy(cdk_context())
    if github is not None:
        context["liftoff"]["github"].update(github)
    config = tmp_path / "cdk.json"
    config.write_text(json.dumps({"context": context}))
    return subprocess.run([sys.executable, str(REPO / "pipeline" / "target.py"), *arguments], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "LIFTOFF_CONFIG": str(config)}, cwd=tmp_path)


def test_target_is_off_while_the_repository_is_null(tmp_path):
    result = target(tmp_path, None, "staging")
    assert (result.returncode, result.stdout) == (0, "enabled=false\n")
    assert "github.repository is null" in result.stderr
    # Jobs that assume a role fail clearly instead of handing an empty role ARN to the credentials action.
    result = target(tmp_path, None, "--require-enabled", "staging")
    assert result.returncode == 2 and "github.repository is null" in result.stderr


def test_target_names_the_stage_role_region_and_a_native_runner(tmp_path):
    result = target(tmp_path, {"repository": "my-org/my-service", "account": "111111111111", "region": "eu-west-1"}, "production")
    assert result.returncode == 0, result.stderr
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert values == {
        "enabled": "true", "role_arn": "arn:aws:iam::111111111111:role/liftoff-production-github-deploy",
        "region": "eu-west-1", "platform": "linux/arm64", "runner": "ubuntu-24.04-arm",
        "registry_stack": "staging-registry", "service_stack": "production-service",
    }


def test_target_refuses_an_unknown_stage(tmp_path):
    result = target(tmp_path, {"repository": "my-org/my-service", "account": "111111111111"}, "qa")
    assert result.returncode == 2 and "unknown stage 'qa'" in result.stderr


def test_one_image_architecture_serves_every_stage_github_deploys():
    # The pipeline builds one image for the registry stage's architecture; every stage pulling it must match
    # (a stage on another architecture would need a multi-arch build: docs/cd-pipeline.md).
    config = parse_config(cdk_context()["liftoff"])
    assert {stage.cpu_architecture for stage in config.stages} == {"arm64"}
