"""Stage options beyond the shipped cdk.json: HTTPS from a domain name or a certificate ARN, and the
paid switches (alb_access_logs, container_insights, enhanced_monitoring). One variant synth turns
all of them on; cdk-nag (it runs on every synth) and cfn-lint must stay clean with them."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.synth import cdk_context, synthesize

ZONE_ID = "Z0123456789ABCDEFGHIJ"
CERTIFICATE_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-1111-2222-333344445555"


def of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["production"].update(
        domain_name="app.example.com", hosted_zone_id=ZONE_ID, hosted_zone_name="example.com",
        alb_access_logs=True, enhanced_monitoring=True,
    )
    context["stages"]["staging"].update(certificate_arn=CERTIFICATE_ARN, container_insights=True)
    # Access logs need a pinned region; production shares staging's registry, so both move.
    for stage in context["stages"].values():
        stage.update(account="123456789012", region="eu-west-1")
    # What `cdk synth` would have looked up and cached in cdk.context.json for a pinned environment.
    lookups = {"availability-zones:account=123456789012:region=eu-west-1": ["eu-west-1a", "eu-west-1b"]}
    return synthesize({**cdk_context(), **lookups, "liftoff": context}, tmp_path_factory.mktemp("cdk.options"))


def test_domain_name_gets_a_dns_validated_certificate_and_an_alias(options):
    template = options.templates["production-service"]
    (certificate,) = of_type(template, "AWS::CertificateManager::Certificate").values()
    assert certificate["Properties"]["DomainName"] == "app.example.com"
    assert certificate["Properties"]["ValidationMethod"] == "DNS"
    assert certificate["Properties"]["DomainValidationOptions"] == [{"DomainName": "app.example.com", "HostedZoneId": ZONE_ID}]
    (record,) = of_type(template, "AWS::Route53::RecordSet").values()
    assert record["Properties"]["Name"] == "app.example.com."
    assert record["Properties"]["Type"] == "A"
    assert record["Properties"]["HostedZoneId"] == ZONE_ID
    alb = next(iter(of_type(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")))
    assert record["Properties"]["AliasTarget"]["DNSName"]["Fn::Join"][1][1] == {"Fn::GetAtt": [alb, "DNSName"]}
    assert template["Outputs"]["ServiceUrl"]["Value"] == "https://app.example.com"


@pytest.mark.parametrize(("stack", "certificate"), [("production-service", "made"), ("staging-service", CERTIFICATE_ARN)])
def test_https_listener_with_a_current_tls_policy_and_a_redirect_from_http(options, stack, certificate):
    template = options.templates[stack]
    listeners = {v["Properties"]["Port"]: v["Properties"] for v in of_type(template, "AWS::ElasticLoadBalancingV2::Listener").values()}
    assert set(listeners) == {80, 443}
    https = listeners[443]
    assert https["Protocol"] == "HTTPS"
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https["DefaultActions"][0]["Type"] == "forward"
    if certificate == "made":
        assert https["Certificates"] == [{"CertificateArn": {"Ref": next(iter(of_type(template, "AWS::CertificateManager::Certificate")))}}]
    else:
        assert https["Certificates"] == [{"CertificateArn": certificate}]
        assert not of_type(template, "AWS::CertificateManager::Certificate")
    redirect = listeners[80]["DefaultActions"][0]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"] == {"Port": "443", "Protocol": "HTTPS", "StatusCode": "HTTP_301"}


def test_shipped_stages_serve_plain_http_without_certificates(shipped):
    for stack in ("staging-service", "production-service"):
        template = shipped.templates[stack]
        assert not of_type(template, "AWS::CertificateManager::Certificate")
        ports = [v["Properties"]["Port"] for v in of_type(template, "AWS::ElasticLoadBalancingV2::Listener").values()]
        assert ports == [80]


def test_alb_access_logs_switch(options, shipped):
    # The bucket holds data: it lives in the stateful data stack, the load balancer in the service stack.
    template = options.templates["production-service"]
    assert not of_type(template, "AWS::S3::Bucket")
    (bucket,) = of_type(options.templates["production-data"], "AWS::S3::Bucket").values()
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["Properties"]["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 90  # the stage's log_retention_days
    (alb,) = of_type(template, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attributes = {a["Key"]: a["Value"] for a in alb["Properties"]["LoadBalancerAttributes"]}
    assert attributes["access_logs.s3.enabled"] == "true"
    assert "Fn::ImportValue" in attributes["access_logs.s3.bucket"]
    assert not of_type(shipped.templates["production-data"], "AWS::S3::Bucket")


def test_container_insights_switch(options, shipped):
    def settings(template):
        (cluster,) = of_type(template, "AWS::ECS::Cluster").values()
        return cluster["Properties"].get("ClusterSettings")

    assert settings(options.templates["staging-service"]) == [{"Name": "containerInsights", "Value": "enabled"}]
    assert settings(shipped.templates["staging-service"]) is None


def test_enhanced_monitoring_switch(options, shipped):
    def database(template):
        (instance,) = of_type(template, "AWS::RDS::DBInstance").values()
        return instance["Properties"]

    on = database(options.templates["production-data"])
    assert on["MonitoringInterval"] == 60
    assert "MonitoringRoleArn" in on
    assert "MonitoringInterval" not in database(shipped.templates["production-data"])


def test_options_pass_cfn_lint_and_cdk_nag(options):
    # The variant synthesized, so cdk-nag found nothing unacknowledged; cfn-lint checks the templates.
    report = json.loads((options.outdir / "validation-report.json").read_text())["pluginReports"][0]
    assert report["conclusion"] == "success" and report["violations"] == []
    acknowledged = {(f["ruleName"].split("[")[0], f["acknowledgedAt"]) for f in report["suppressedViolations"]}
    assert ("AwsSolutions-S1", "production-data/AccessLogs/Bucket") in acknowledged
    assert ("AwsSolutions-ELB2", "production-service/LoadBalancer/Alb") not in acknowledged
    assert ("AwsSolutions-ECS4", "staging-service/Ecs/Cluster") not in acknowledged
    templates = sorted(str(path) for path in Path(options.outdir).glob("*.template.json"))
    # W3010: a stage pinned to an account and region gets its VPC's zones from CDK's lookup, written
    # into the template by design (the shipped, environment-agnostic stages use Fn::GetAZs).
    result = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", "--ignore-checks=W3010", *templates],
                            capture_output=True, text=True)
    assert result.stdout == "" and result.returncode == 0, result.stdout + result.stderr


def test_blue_green_production_rule_sits_on_the_https_listener(options):
    # With a certificate, port 80 only redirects: the rule ECS rewrites must be on the listener that serves.
    template = options.templates["staging-service"]
    listeners = of_type(template, "AWS::ElasticLoadBalancingV2::Listener")
    https = next(k for k, v in listeners.items() if v["Properties"]["Protocol"] == "HTTPS")
    (rule,) = of_type(template, "AWS::ElasticLoadBalancingV2::ListenerRule").values()
    assert rule["Properties"]["ListenerArn"] == {"Ref": https}
