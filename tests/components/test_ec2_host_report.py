"""The host report (docs/release-flow.md): what a host really holds, written as one SSM parameter per
instance at the start and the end of every gate, and how a booting host chooses its version from its
peers' reports. The host scripts run for real with the stand-ins of tests/components/fakes/ (the
restart mode; the two slots' reports are read on the host boxes, tests/local/host_boxes_world/test_host_boxes_faults.py).
"""
from __future__ import annotations

import json

import pytest

from tests.components.test_ec2_host import INSTANCE_ID, OTHER_INSTANCE_ID, Host, host, ref, signing  # noqa: F401  (fixtures)

REPORT_PATH = "/liftoff/liftoff-production-service/hosts/"
THIRD_INSTANCE_ID = "i-0ccccccccccccccc3"


def reporting(host: Host, **overrides: str) -> Host:
    host.host_env(HOST_REPORT_PATH=REPORT_PATH, READY_CHECK_PATH="/readyz", READY_TIMEOUT_SECONDS="0", **overrides)
    return host


def report_history(host: Host, instance: str = INSTANCE_ID) -> list[dict]:
    path = host.state / "ssm_history" / f"{REPORT_PATH}{instance}".replace("/", "%")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_stage_reports_running_then_succeeded_with_what_docker_holds(host: Host, signing: str) -> None:
    reporting(host)
    host.running("1.0.0")
    result = host.run("liftoff-stage", "1.1.0")
    assert result.returncode == 0, result.stderr
    start, end = report_history(host)
    # Made beside the pull (it may see the pull done), it says the gate was running whatever it saw.
    assert start["last_gate"] | {"at": ""} == {"gate": "stage", "version": "1.1.0", "result": "running", "reason": "", "at": ""}
    assert end["instance"] == INSTANCE_ID
    assert end["last_gate"] | {"at": ""} == {"gate": "stage", "version": "1.1.0", "result": "succeeded", "reason": "", "at": ""}
    # Read from docker and the service at report time: the container runs 1.0.0 and answers its readiness.
    assert (end["active"], end["active_slot"], end["ready"]) == ("1.0.0", "", True)
    assert (end["staged"], end["staged_present"]) == ("1.1.0", True)
    assert (end["warm"], end["warm_until"]) == ("", "")
    put = host.requests("PutParameter")[-1]
    assert (put.parameters["Name"], put.parameters["Type"], put.parameters["Overwrite"], put.via) == (
        f"{REPORT_PATH}{INSTANCE_ID}", "String", True, signing)
    assert len(json.dumps(end)) < 4096


def test_a_failed_pull_reports_dockers_own_reason_in_one_line(host: Host) -> None:
    reporting(host)
    host.running("1.0.0")
    (host.state / "pull_fails").write_text(
        "Pulling fs layer\nfailed to register layer: write /var/lib/docker/overlay2/x/diff/app: no space left on device\n")
    result = host.run("liftoff-stage", "1.1.0")
    assert result.returncode == 1
    end = report_history(host)[-1]
    assert end["last_gate"]["result"] == "failed"
    reason = end["last_gate"]["reason"]
    assert reason.startswith(f"docker pull {ref('1.1.0')}: failed to register layer") and reason.endswith("no space left on device")
    assert "\n" not in reason
    assert (end["staged"], end["staged_present"], end["active"]) == ("1.1.0", False, "1.0.0")


def test_a_refused_call_fails_the_gate_with_the_denial_in_its_reason(host: Host, signing: str) -> None:
    # What IAM says when the host role may not log in to the registry (the emulator's words are AWS's: local/moto_iam.py).
    reporting(host)
    host.running("1.0.0")
    denial = ("User: arn:aws:sts::123456789012:assumed-role/production-service-Ec2HostRole-X/i-0aaaaaaaaaaaaaaa1 is not "
              "authorized to perform: ecr:GetAuthorizationToken because no identity-based policy allows the "
              "ecr:GetAuthorizationToken action")
    (host.state / "ecr_login_refused").write_text(denial)
    result = host.run("liftoff-stage", "1.1.0")
    assert result.returncode == 1
    assert denial in result.stderr  # the unit's event lines (the journal)
    end = report_history(host)[-1]
    assert end["last_gate"]["result"] == "failed"
    assert end["last_gate"]["reason"].endswith(denial) and "ECR login" in end["last_gate"]["reason"]
    assert host.calls("systemctl") == [] and ["docker", "pull"] not in [c[:2] for c in host.calls("docker")]


def test_a_report_that_cannot_be_written_never_fails_a_gate_that_succeeded(host: Host, signing: str) -> None:
    reporting(host)
    host.running("1.0.0")
    (host.state / "ssm_put_fails").write_text("An error occurred (AccessDeniedException) when calling the PutParameter operation\n")
    result = host.run("liftoff-stage", "1.1.0")
    assert result.returncode == 0, result.stderr
    assert "WARNING: the host report" in result.stderr and "AccessDeniedException" in result.stderr
    # ... and the instance's liftoff-host-report stream in the log group says so.
    events = host.requests("PutLogEvents")
    assert events and all(event.parameters["logStreamName"] == f"{INSTANCE_ID}/liftoff-host-report" for event in events)
    assert "AccessDeniedException" in events[-1].parameters["logEvents"][0]["message"]


def test_activate_reports_its_result_and_the_version_that_really_runs(host: Host) -> None:
    reporting(host)
    host.running("1.0.0")
    host.has_images("1.1.0")
    host.unhealthy("1.1.0")
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 1
    end = report_history(host)[-1]
    assert end["last_gate"]["gate"] == "activate" and end["last_gate"]["result"] == "failed"
    assert "rolled back" in end["last_gate"]["reason"]
    assert end["active"] == "1.0.0" and end["ready"] is True


def test_no_report_path_no_report(host: Host) -> None:
    host.running("1.0.0")
    assert host.run("liftoff-stage", "1.1.0").returncode == 0
    assert host.requests("PutParameter") == []


def test_a_report_path_must_be_a_path(host: Host) -> None:
    host.host_env(HOST_REPORT_PATH="liftoff/hosts")
    result = host.run("liftoff-stage", "1.1.0")
    assert result.returncode == 1 and "HOST_REPORT_PATH must be an SSM parameter path" in result.stderr
    assert host.calls() == []


# --- boot: the version the fleet serves ------------------------------------------------------


def peers(host: Host, reports: dict[str, dict], in_service: list[str], leaving: tuple[str, ...] = ()) -> None:
    (host.state / "asg_name").write_text("liftoff-production-hosts\n")
    members = [(instance, "InService") for instance in (INSTANCE_ID, *in_service)] + [(instance, "Terminating") for instance in leaving]
    (host.state / "asg_instances.json").write_text(json.dumps([{"InstanceId": i, "LifecycleState": state} for i, state in members]))
    (host.state / "ssm").mkdir(exist_ok=True)
    for instance, report in reports.items():
        (host.state / "ssm" / f"{REPORT_PATH}{instance}".replace("/", "%")).write_text(json.dumps({"instance": instance, **report}))


@pytest.mark.parametrize("page_size", [None, 1], ids=["one page", "a page a report"])
def test_a_replacement_boots_the_version_every_ready_peer_serves_not_the_parameter(host: Host, page_size, signing) -> None:
    reporting(host)
    if page_size:  # SSM answers GetParametersByPath in pages (10 parameters at most): every page is read
        (host.state / "ssm_page_size").write_text(f"{page_size}\n")
    (host.state / "ssm_active_tag").write_text("1.1.0\n")  # an activation of 1.1.0 ended unverified
    peers(host, {OTHER_INSTANCE_ID: {"active": "1.0.0", "ready": True},
                 THIRD_INSTANCE_ID: {"active": "1.0.0", "ready": True},
                 # a terminated host's report stays behind; not in service, it does not count
                 "i-0ddddddddddddddd4": {"active": "1.1.0", "ready": True},
                 # nor does one leaving the group
                 "i-0fffffffffffffff6": {"active": "1.1.0", "ready": True}},
          in_service=[OTHER_INSTANCE_ID, THIRD_INSTANCE_ID], leaving=("i-0fffffffffffffff6",))
    result = host.run("liftoff-boot")
    assert result.returncode == 0, result.stderr
    assert "every ready peer serves 1.0.0, not 1.1.0" in result.stderr
    # The group, then its members, asked of Auto Scaling (its query API, signed by curl, unless curl cannot sign).
    assert [(r.operation, r.parameters, r.via) for r in host.requests() if r.operation.startswith("DescribeAutoScaling")] == [
        ("DescribeAutoScalingInstances", {"InstanceIds.member.1": INSTANCE_ID}, signing),
        ("DescribeAutoScalingGroups", {"AutoScalingGroupNames.member.1": "liftoff-production-hosts"}, signing)]
    assert host.active() == "IMAGE_TAG=1.0.0\n" and host.restarts() == ["1.0.0"]
    end = report_history(host)[-1]
    assert end["last_gate"]["gate"] == "boot" and end["last_gate"]["version"] == "1.0.0"
    assert end["last_gate"]["result"] == "succeeded" and end["active"] == "1.0.0"
    # Each page asked for once, from the first to the last (the peers' reports and this host's own).
    stored = len(list((host.state / "ssm").iterdir()))
    tokens = [page.parameters.get("NextToken") for page in host.requests("GetParametersByPath")]
    # The CLI pages by itself: one call.
    assert tokens == ([None] if page_size is None or signing == "cli" else [None, *map(str, range(1, stored))]), tokens


@pytest.mark.parametrize("reports, why", [
    ({}, "no ready peer reports a version"),
    ({OTHER_INSTANCE_ID: {"active": "1.0.0", "ready": True}, THIRD_INSTANCE_ID: {"active": "1.1.0", "ready": True}},
     "ready peers serve different versions"),
    # An unready peer's version is no evidence of what serves; an unreadable report is skipped.
    ({OTHER_INSTANCE_ID: {"active": "1.0.0", "ready": False}}, "no ready peer reports a version"),
], ids=["first host", "split fleet", "unready peer"])
def test_otherwise_boot_follows_the_parameter(host: Host, reports: dict, why: str) -> None:
    reporting(host)
    (host.state / "ssm_active_tag").write_text("1.1.0\n")
    peers(host, reports, in_service=[OTHER_INSTANCE_ID, THIRD_INSTANCE_ID])
    (host.state / "ssm" / f"{REPORT_PATH}i-0eeeeeeeeeeeeeee5".replace("/", "%")).write_text("not json")
    result = host.run("liftoff-boot")
    assert result.returncode == 0, result.stderr
    assert why in result.stderr and host.active() == "IMAGE_TAG=1.1.0\n"


def test_a_host_in_no_group_boots_the_parameter(host: Host, signing) -> None:
    reporting(host)
    (host.state / "ssm_active_tag").write_text("1.1.0\n")
    peers(host, {OTHER_INSTANCE_ID: {"active": "1.0.0", "ready": True}}, in_service=[OTHER_INSTANCE_ID])
    (host.state / "asg_name").unlink()  # Auto Scaling knows no such instance
    result = host.run("liftoff-boot")
    assert result.returncode == 0, result.stderr
    assert "no ready peer reports a version" in result.stderr and host.active() == "IMAGE_TAG=1.1.0\n"
    assert [r.operation for r in host.requests() if r.operation.startswith("DescribeAutoScaling")] == ["DescribeAutoScalingInstances"]


def test_liftoff_report_writes_what_it_finds_and_keeps_the_last_gate(host: Host) -> None:
    """What liftoff-report.service runs at a restart of the host: no gate, a fresh look."""
    reporting(host)
    host.running("1.0.0")
    assert host.run("liftoff-stage", "1.1.0").returncode == 0
    gate = report_history(host)[-1]["last_gate"]
    (host.state / "images").write_text(f"{ref('1.0.0')}\n")  # the staged image is gone since
    (host.state / "unready_tags").write_text("1.0.0\n")
    result = host.run("liftoff-report")
    assert result.returncode == 0, result.stderr
    assert "live but not ready (HTTP 503" in result.stderr
    found = report_history(host)[-1]
    assert found["last_gate"] == gate
    assert (found["active"], found["ready"], found["staged"], found["staged_present"]) == ("1.0.0", False, "1.1.0", False)


def test_records_cut_short_or_not_json_are_reported_as_null_and_the_report_is_still_written(host: Host) -> None:
    """A power cut can leave the last gate's record or the canary's verdict half written: the report says null for
    that one (it never guesses) and keeps the rest of what the host holds."""
    reporting(host)
    host.running("1.0.0")
    (host.config / "last-gate.json").write_text('{"gate": "stage", "version": "1.1')
    (host.config / "canary.json").write_text("not json\n")
    assert host.run("liftoff-report").returncode == 0
    found = report_history(host)[-1]
    assert (found["last_gate"], found["canary"], found["active"]) == (None, None, "1.0.0")
    (host.config / "canary.json").write_text('{"version": "1.1.0", "verdict": "good"}\n')
    assert host.run("liftoff-report").returncode == 0
    assert report_history(host)[-1]["canary"] == {"version": "1.1.0", "verdict": "good"}
