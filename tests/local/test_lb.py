"""The load balancer stand-in: its settings come from the synthesized target group, and a real HAProxy
follows the emulator's registrations with ALB-like states (initial, healthy, unhealthy, draining)."""
from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from local import lb
from local.emulator import free_port
from local.endpoints import rewrite_target_health


def test_settings_are_the_synthesized_target_groups(shipped):
    template = json.loads((shipped.outdir / "production-service.template.json").read_text())
    settings = lb.TargetGroupSettings.from_template(template)
    assert settings == lb.TargetGroupSettings(
        health_check_path="/healthz", matcher="200", interval_seconds=5, timeout_seconds=3, healthy_threshold=2,
        unhealthy_threshold=2, deregistration_delay_seconds=5, port=8080)
    config = lb.haproxy_config(settings, listen_port=8123, admin_socket=shipped.outdir / "admin.sock")
    assert "option httpchk GET /healthz" in config and "http-check expect status 200" in config
    assert "timeout check 3s" in config and "bind 127.0.0.1:8123" in config
    assert settings.server_options() == "check inter 5s rise 2 fall 2"


def test_aws_defaults_apply_where_the_template_sets_nothing():
    settings = lb.TargetGroupSettings.from_template(
        {"Resources": {"Tg": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {}}}})
    assert (settings.interval_seconds, settings.healthy_threshold, settings.deregistration_delay_seconds) == (30, 5, 300)


def test_a_template_without_a_target_group_is_refused():
    with pytest.raises(lb.LoadBalancerError, match="expected a target group in the service template, found none"):
        lb.TargetGroupSettings.from_template({"Resources": {}})


def test_groups_that_check_alike_share_their_settings_and_groups_that_differ_are_refused():
    group = {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {"HealthCheckPath": "/healthz"}}
    other = {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {"HealthCheckPath": "/other"}}
    assert lb.TargetGroupSettings.from_template({"Resources": {"A": group, "B": group}}).health_check_path == "/healthz"
    with pytest.raises(lb.LoadBalancerError, match="2 target groups differ"):
        lb.TargetGroupSettings.from_template({"Resources": {"A": group, "B": other}})


class Backend:
    """A loopback HTTP server whose /healthz and /version the test controls."""

    def __init__(self, version: str):
        self.version, self.healthy = version, True
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/healthz":
                    status, body = (200, b"ok") if backend.healthy else (503, b"no")
                else:
                    status, body = 200, json.dumps({"version": backend.version}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def balancer(tmp_path, emulated_aws):
    settings = lb.TargetGroupSettings(health_check_path="/healthz", matcher="200", interval_seconds=1, timeout_seconds=1,
                                      healthy_threshold=2, unhealthy_threshold=2, deregistration_delay_seconds=2, port=0)
    running = lb.LoadBalancer(settings, state_dir=tmp_path, name="t", listen_port=free_port())
    running.start()
    yield running
    running.stop()
    assert not running.admin_socket.exists()


def wait_for(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_the_controller_follows_registrations_with_alb_states(balancer, tmp_path):
    elbv2 = boto3.client("elbv2")
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    group = elbv2.create_target_group(Name="t", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    backends = {"10.0.0.1": Backend("1.0.0"), "10.0.0.2": Backend("1.1.0")}
    health_file = tmp_path / "health.json"
    controller = lb.Controller(balancer, elbv2=elbv2, target_group_arn=group, health_file=health_file, say=lambda _: None,
                               address_of=lambda target: "127.0.0.1" if target in backends else None)
    # Each backend listens on its own loopback port: register it under its "address" with that port.
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": "10.0.0.1", "Port": backends["10.0.0.1"].port}])
    try:
        # Each pass reads HAProxy once; what it returns is what it published, to the file and to `states`.
        assert controller.sync() == {"10.0.0.1": "initial"}  # no traffic before `rise` passes
        assert json.loads(health_file.read_text()) == {group: {"10.0.0.1": "initial"}}
        wait_for(lambda: controller.sync() == {"10.0.0.1": "healthy"})
        assert json.loads(health_file.read_text()) == {group: {"10.0.0.1": "healthy"}}
        assert controller.states() == {"10.0.0.1": "healthy"}
        answered = json.loads(urllib.request.urlopen(f"{balancer.url}/version", timeout=5).read())
        assert answered == {"version": "1.0.0"}

        elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": "10.0.0.2", "Port": backends["10.0.0.2"].port}])
        wait_for(lambda: controller.sync() == {"10.0.0.1": "healthy", "10.0.0.2": "healthy"})
        elbv2.deregister_targets(TargetGroupArn=group, Targets=[{"Id": "10.0.0.1", "Port": backends["10.0.0.1"].port}])
        assert controller.sync()["10.0.0.1"] == "draining"
        assert json.loads(health_file.read_text())[group]["10.0.0.1"] == "draining"
        # Draining: no new requests to it.
        versions = {json.loads(urllib.request.urlopen(f"{balancer.url}/version", timeout=5).read())["version"] for _ in range(6)}
        assert versions == {"1.1.0"}
        wait_for(lambda: controller.sync() == {"10.0.0.2": "healthy"}, timeout=10)
        assert "10.0.0.1" not in balancer.servers()

        backends["10.0.0.2"].healthy = False
        wait_for(lambda: controller.sync() == {"10.0.0.2": "unhealthy"})
        assert json.loads(health_file.read_text()) == {group: {"10.0.0.2": "unhealthy"}}
    finally:
        for backend in backends.values():
            backend.close()


def test_a_weighted_listener_rule_sends_each_group_its_share_and_both_groups_are_checked(balancer, tmp_path):
    elbv2 = boto3.client("elbv2")
    vpc = boto3.client("ec2").create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    blue, green = (elbv2.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
                   for name in ("blue", "green"))
    backends = {"10.0.0.1": Backend("1.0.0"), "10.0.0.2": Backend("1.1.0")}
    weights = {blue: 100, green: 0}
    health_file = tmp_path / "health.json"
    controller = lb.Controller(balancer, elbv2=elbv2, target_group_arns=[blue, green], routing=lambda: dict(weights),
                               health_file=health_file, say=lambda _: None,
                               address_of=lambda target: "127.0.0.1" if target in backends else None)
    elbv2.register_targets(TargetGroupArn=blue, Targets=[{"Id": "10.0.0.1", "Port": backends["10.0.0.1"].port}])
    elbv2.register_targets(TargetGroupArn=green, Targets=[{"Id": "10.0.0.2", "Port": backends["10.0.0.2"].port}])

    def versions(count=8):
        return {json.loads(urllib.request.urlopen(f"{balancer.url}/version", timeout=5).read())["version"] for _ in range(count)}

    try:
        wait_for(lambda: controller.sync() == {"10.0.0.1": "healthy", "10.0.0.2": "healthy"})
        # The group at weight 0 is checked (healthy) but serves nothing.
        assert controller.states_of(green) == {"10.0.0.2": "healthy"} and controller.states_of(blue) == {"10.0.0.1": "healthy"}
        assert json.loads(health_file.read_text()) == {blue: {"10.0.0.1": "healthy"}, green: {"10.0.0.2": "healthy"}}
        assert versions() == {"1.0.0"}
        weights.update({blue: 0, green: 100})
        controller.sync()
        assert versions() == {"1.1.0"}
        weights.update({blue: 50, green: 50})
        controller.sync()
        assert versions(count=20) == {"1.0.0", "1.1.0"}  # round robin over equal weights: both within 20 requests
    finally:
        for backend in backends.values():
            backend.close()


def test_the_endpoint_proxy_answers_describe_target_health_with_the_stand_ins_states():
    body = (b'<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">'
            b'<DescribeTargetHealthResult><TargetHealthDescriptions>'
            b'<member><Target><Id>i-1</Id><Port>8080</Port></Target><TargetHealth><State>healthy</State></TargetHealth></member>'
            b'<member><Target><Id>i-2</Id><Port>8080</Port></Target><TargetHealth><State>healthy</State></TargetHealth></member>'
            b'</TargetHealthDescriptions></DescribeTargetHealthResult></DescribeTargetHealthResponse>')
    health = {"arn:tg": {"i-1": "initial", "i-2": "healthy", "i-3": "draining"}}
    rewritten = rewrite_target_health(body, {"TargetGroupArn": ["arn:tg"]}, health).decode()
    assert "<State>initial</State><Reason>Elb.RegistrationInProgress</Reason>" in rewritten
    assert rewritten.count("<State>healthy</State>") == 1
    # A draining target moto already forgot is reported, as an ALB does for the delay.
    assert "<Id>i-3</Id>" in rewritten and "<State>draining</State>" in rewritten
    # Asked about one target only: only that one.
    only = rewrite_target_health(body, {"TargetGroupArn": ["arn:tg"], "Targets.member.1.Id": ["i-1"]}, health).decode()
    assert "i-3" not in only
    # Another target group: moto's answer unchanged.
    assert rewrite_target_health(body, {"TargetGroupArn": ["arn:other"]}, health) == body


def test_a_deep_state_directory_still_gets_an_admin_socket_haproxy_accepts(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    settings = lb.TargetGroupSettings(health_check_path="/healthz", matcher="200", interval_seconds=1, timeout_seconds=1,
                                      healthy_threshold=2, unhealthy_threshold=2, deregistration_delay_seconds=2, port=0)
    running = lb.LoadBalancer(settings, state_dir=deep, name="t", listen_port=free_port())
    assert len(str(running.admin_socket)) <= lb.MAX_SOCKET_PATH
    running.start()
    try:
        assert running.servers() == {}
    finally:
        running.stop()
    assert not running.admin_socket.exists()


def test_a_traffic_shift_raises_the_new_groups_weights_before_it_lowers_the_old_ones():
    # HAProxy applies each weight at once: all servers at 0 for a moment would answer a request 503.
    current = {"blue-1": 128, "blue-2": 128, "green-1": 0, "green-2": 0, "steady": 64}
    wanted = {"blue-1": 0, "blue-2": 0, "green-1": 128, "green-2": 128, "steady": 64, "new": 0}
    assert lb.route_order(wanted, current) == [("green-1", 128), ("green-2", 128), ("blue-1", 0), ("blue-2", 0), ("new", 0)]
    assert lb.route_order(current, current) == []
