"""cdk-nag AwsSolutions runs on every synth; the shipped app has no unacknowledged finding."""
from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from cdk_nag import AwsSolutionsChecks


def report(outdir) -> dict:
    reports = json.loads((outdir / "validation-report.json").read_text())["pluginReports"]
    return next(r for r in reports if r["pluginName"] == "AwsSolutions")


def test_no_unacknowledged_findings(shipped):
    nag = report(shipped.outdir)
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []


def test_every_acknowledgement_is_resource_level_with_a_reason(shipped):
    suppressed = report(shipped.outdir)["suppressedViolations"]
    assert suppressed, "the shipped app acknowledges some findings; an empty list means the report is not read"
    for finding in suppressed:
        stack_name, _, construct_path = finding["acknowledgedAt"].partition("/")
        assert construct_path, f"{finding['ruleName']} is acknowledged for a whole stack ({stack_name})"
        assert len(finding["reason"]) > 40, f"{finding['ruleName']} needs a specific reason"


def test_acknowledged_findings_are_exactly_the_reviewed_ones(shipped):
    # A new acknowledgement is a security decision: it shows up here and in review.
    acknowledged = {(f["ruleName"].split("[")[0], f["acknowledgedAt"]) for f in report(shipped.outdir)["suppressedViolations"]}
    assert acknowledged == {
        ("AwsSolutions-AS3", "production-service/Ec2/Hosts"),
        ("AwsSolutions-EC23", "production-service/LoadBalancer/SecurityGroup"),
        ("AwsSolutions-EC23", "staging-service/LoadBalancer/SecurityGroup"),
        ("AwsSolutions-ECS2", "staging-service/Ecs/Task"),
        ("AwsSolutions-ECS4", "staging-service/Ecs/Cluster"),
        ("AwsSolutions-IAM4", "staging-service/Ecs/Service/AlternateTargetRole"),
        ("AwsSolutions-ELB2", "production-service/LoadBalancer/Alb"),
        ("AwsSolutions-ELB2", "staging-service/LoadBalancer/Alb"),
        ("AwsSolutions-IAM4", "production-service/Ec2/HostRole"),
        ("AwsSolutions-IAM5", "production-service/Ec2/HostRole/DefaultPolicy"),
        ("AwsSolutions-IAM5", "staging-service/Ecs/Task/ExecutionRole"),
        ("AwsSolutions-IAM5", "production-service/Operators/Policy"),
        ("AwsSolutions-IAM5", "staging-service/Operators/Policy"),
        ("AwsSolutions-RDS10", "staging-data/Database/Instance"),
        ("AwsSolutions-RDS11", "production-data/Database/Instance"),
        ("AwsSolutions-RDS11", "staging-data/Database/Instance"),
        ("AwsSolutions-RDS3", "staging-data/Database/Instance"),
        ("AwsSolutions-SMG4", "production-data/Database/Instance/Secret"),
        ("AwsSolutions-SMG4", "staging-data/Database/Instance/Secret"),
    }


def test_nag_fails_synth_on_a_real_finding(tmp_path):
    # Proves the plugin is live: a security group open to the world without acknowledgement fails synth.
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "nag-probe")
    vpc = ec2.Vpc(stack, "Vpc", nat_gateways=0, restrict_default_security_group=False)
    group = ec2.SecurityGroup(stack, "Open", vpc=vpc)
    group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(22))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    rules = {v["ruleName"] for v in report(tmp_path)["violations"]}
    assert "AwsSolutions-EC23" in rules


def test_every_acknowledged_rule_and_switch_is_explained_in_security_md(shipped):
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "security.md").read_text()
    for rule in {f["ruleName"].split("[")[0] for f in report(shipped.outdir)["suppressedViolations"]}:
        assert rule in text, f"docs/security.md does not explain {rule}"
    for switch in ("alb_access_logs", "container_insights", "enhanced_monitoring", "domain_name", "certificate_arn"):
        assert f"`{switch}" in text, switch
