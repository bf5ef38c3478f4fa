"""The ec2 mode for real: hosts boot from the synthesized user data in systemd boxes with their own Docker, pull the
real image from a real registry, and serve behind their host proxy; what each host may read and write, and where its
output goes.

The world is this directory's (conftest.py), freshly booted: these tests only read it (a log line written by a host
is all they leave), so the modules after them find the hosts as they booted.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest

from local import boxes
from tests.local.host_boxes_world import UNIT_MINUTES
from tests.helpers.box_world import active_slot, app_container, on_host, running_containers

pytestmark = pytest.mark.cost(minutes=UNIT_MINUTES)


def test_each_instance_boots_the_active_version_from_the_launch_template_user_data(hosts, production):
    instances = [i["InstanceId"] for i in production.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[production.service_outputs["AutoScalingGroupName"]])["AutoScalingGroups"][0]["Instances"]]
    assert sorted(box.instance_id for box in hosts.hosts) == sorted(instances) and len(instances) == 2
    assert set(hosts.boot_seconds) == set(instances)
    for box in hosts.hosts:
        # cloud-init's stand-in ran the launch template's bytes; liftoff-boot read the active tag from SSM.
        signal = json.loads(on_host(hosts, box, "cat", boxes.SIGNAL_FILE))
        assert signal["status"] == "SUCCESS" and signal["stack"] == production.stack_names["service"]
        assert hosts.serving_version(box) == "1.0.0"
        assert boxes.active_tag(hosts.daemon, box) == "1.0.0"
        # The image came from the registry under the repository's ECR name, pulled by the host's own Docker.
        assert on_host(hosts, box, "docker", "inspect", "--format", "{{.Config.Image}}", "liftoff-app-a").endswith(
            f"/{production.repository_name}:1.0.0")
        # Slot a serves from a loopback port; the load balancer's port is the host proxy's.
        assert active_slot(hosts, box) == "a" and running_containers(hosts, box) == {"liftoff-app-a"}
        assert on_host(hosts, box, "systemctl", "is-active", "liftoff-proxy.service") == "active"


def test_hosts_do_not_see_each_others_containers(hosts):
    first, second = hosts.hosts
    assert app_container(hosts, first) != app_container(hosts, second)
    assert on_host(hosts, first, "docker", "ps", "--quiet", "--no-trunc") == app_container(hosts, first)


def test_a_slot_is_reachable_only_through_the_host_proxy(hosts):
    box = hosts.hosts[0]
    env = hosts.host_environment()
    published = on_host(hosts, box, "docker", "port", "liftoff-app-a")
    assert published.splitlines() == [f"{env['CONTAINER_PORT']}/tcp -> 127.0.0.1:{env['SLOT_A_PORT']}"]
    status, _ = hosts.answer(box, "/healthz")
    assert status == 200


def test_db_password_is_root_only_and_never_in_docker_inspect_or_the_journal(hosts):
    box = hosts.hosts[0]
    secret = json.loads(hosts.session.client("secretsmanager").get_secret_value(
        SecretId=hosts.host_environment()["DB_SECRET_ARN"])["SecretString"])
    password = secret["password"]
    slot = active_slot(hosts, box)
    assert on_host(hosts, box, "stat", "--format", "%a %U", f"/run/liftoff-slot-{slot}") == "700 root"
    denied = boxes.run_on_box(hosts.daemon, box, "runuser", "-u", "nobody", "--", "cat", f"/run/liftoff-slot-{slot}/db-password")
    assert denied.returncode != 0 and password not in denied.stdout
    assert password not in on_host(hosts, box, "docker", "inspect", f"liftoff-app-{slot}")
    assert password not in on_host(hosts, box, "journalctl", "--no-pager", "--output", "cat")
    # ... and yet the service reaches its database with it.
    assert hosts.answer(box, "/readyz")[0] == 200


def test_container_output_and_unit_events_reach_the_stage_log_group(hosts):
    logs = hosts.session.client("logs")
    group = hosts.host_environment()["LOG_GROUP"]
    streams = [stream["logStreamName"] for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]]
    for box in hosts.hosts:
        unit_stream = f"{box.instance_id}/liftoff-slot@a.service"
        assert unit_stream in streams
        events = [event["message"] for event in logs.get_log_events(logGroupName=group, logStreamName=unit_stream)["events"]]
        assert any(message.startswith("liftoff-slot@a started version=1.0.0") for message in events)
    container_messages = [event["message"] for stream in streams if "/" not in stream
                          for event in logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]]
    assert any('"logger": "liftoff.migrate"' in message for message in container_messages)
    assert any('"logger": "gunicorn.error"' in message for message in container_messages)


def test_a_host_signs_its_event_lines_and_reports_with_curl_under_its_roles_policy(hosts):
    box = hosts.hosts[0]
    group = hosts.host_environment()["LOG_GROUP"]
    stream = f"{box.instance_id}/liftoff-slot@a.service"

    def aws_json(target: str, body: dict) -> subprocess.CompletedProcess:
        # The host scripts' own function, which has nothing to fall back on: curl signs, or it fails.
        script = ". /opt/liftoff/bin/liftoff-common.sh && load_config && aws_json logs " + shlex.join([target, json.dumps(body)])
        return boxes.run_on_box(hosts.daemon, box, "bash", "-c", script, timeout=60)

    line = {"logGroupName": group, "logStreamName": stream, "logEvents": [{"timestamp": int(time.time() * 1000), "message": "signed by curl"}]}
    put = aws_json("Logs_20140328.PutLogEvents", line)
    assert put.returncode == 0, put.stderr
    events = hosts.session.client("logs").get_log_events(logGroupName=group, logStreamName=stream)["events"]
    assert "signed by curl" in [event["message"] for event in events]
    # The emulator holds a curl-signed call to the instance role's policy, as it holds the CLI's.
    refused = aws_json("Logs_20140328.DeleteLogGroup", {"logGroupName": group})
    assert refused.returncode == 1 and "AccessDenied" in refused.stderr and "logs:DeleteLogGroup" in refused.stderr, refused.stderr
    assert group in [g["logGroupName"] for g in hosts.session.client("logs").describe_log_groups()["logGroups"]]


def test_a_host_reads_its_group_and_the_in_service_peers_from_auto_scalings_xml_signed_by_curl(hosts):
    box = hosts.hosts[0]
    # The host scripts' own functions; with `aws` made to fail, curl's signed query (and its XML, read in bash) is
    # the only way they can answer.
    script = (". /opt/liftoff/bin/liftoff-common.sh && load_config && aws() { echo 'the CLI was called' >&2; return 99; } && "
              f"group=$(group_of_instance {box.instance_id}) && echo \"$group\" && in_service_instances \"$group\"")
    read = boxes.run_on_box(hosts.daemon, box, "bash", "-c", script, timeout=60)
    assert read.returncode == 0, read.stderr
    group_name, peers = read.stdout.splitlines()
    groups = hosts.session.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])["AutoScalingGroups"]
    in_service = [i["InstanceId"] for i in groups[0]["Instances"] if i["LifecycleState"] == "InService"]
    assert sorted(json.loads(peers)) == sorted(in_service) and box.instance_id in in_service


def test_each_release_has_its_own_digest_in_the_registry_and_the_emulated_ecr(hosts, production):
    details = production.client("ecr").describe_images(repositoryName=production.repository_name)["imageDetails"]
    by_tag = {tag: detail["imageDigest"] for detail in details for tag in detail.get("imageTags", [])}
    assert by_tag["1.0.0"] != by_tag["1.1.0"]
