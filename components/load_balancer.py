"""The load balancer: one public entry point, tuned so a rollout wave costs seconds, not minutes.

AWS defaults (health check every 30 s, 5 passes to healthy, 300 s deregistration delay) spend about
eight minutes per wave in AWS's own waits. The service answers its liveness path in milliseconds and
finishes in-flight requests within seconds, so short intervals and a short drain lose nothing.
"""
from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from constructs import Construct

HEALTH_CHECK_INTERVAL_SECONDS = 5
HEALTH_CHECK_TIMEOUT_SECONDS = 3
HEALTHY_THRESHOLD = 2
UNHEALTHY_THRESHOLD = 2


class LoadBalancer(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        target_type: elbv2.TargetType,
        container_port: int,
        health_check_path: str,
        drain_seconds: int,
        certificate: acm.ICertificate | None,
        access_logs_bucket: s3.IBucket | None,
        alternate_target_group: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="liftoff load balancer", allow_all_outbound=False
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=self.security_group,
            drop_invalid_header_fields=True,
        )
        def target_group(construct_id: str) -> elbv2.ApplicationTargetGroup:
            return elbv2.ApplicationTargetGroup(
                self,
                construct_id,
                vpc=vpc,
                target_type=target_type,
                port=container_port,
                protocol=elbv2.ApplicationProtocol.HTTP,
                deregistration_delay=Duration.seconds(drain_seconds),
                health_check=elbv2.HealthCheck(
                    path=health_check_path,
                    healthy_http_codes="200",
                    interval=Duration.seconds(HEALTH_CHECK_INTERVAL_SECONDS),
                    timeout=Duration.seconds(HEALTH_CHECK_TIMEOUT_SECONDS),
                    healthy_threshold_count=HEALTHY_THRESHOLD,
                    unhealthy_threshold_count=UNHEALTHY_THRESHOLD,
                ),
            )

        self.target_group = target_group("Targets")
        # ECS blue/green, canary and linear start the new tasks in the other target group and move traffic
        # by rewriting the weights of one listener rule; the groups swap roles on every release.
        self.alternate_target_group = target_group("AlternateTargets") if alternate_target_group else None
        self.target_groups: tuple[elbv2.ApplicationTargetGroup, ...] = tuple(
            group for group in (self.target_group, self.alternate_target_group) if group is not None
        )
        if certificate is not None:
            serving = self.load_balancer.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_certificate_manager(certificate)],
                # TLS 1.3 and 1.2 only (ELBSecurityPolicy-TLS13-1-2-2021-06), AWS's recommended policy.
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                default_target_groups=[self.target_group],
            )
            self.load_balancer.add_redirect(source_port=80, target_port=443)
            self.url_scheme = "https"
        else:
            serving = self.load_balancer.add_listener(
                "Http", port=80, protocol=elbv2.ApplicationProtocol.HTTP, default_target_groups=[self.target_group]
            )
            self.url_scheme = "http"
        self.production_rule = None
        if self.alternate_target_group is not None:
            # Every path matches the rule, so the listener's default (the first group) is never reached
            # even after ECS has moved the traffic to the other group.
            self.production_rule = elbv2.ApplicationListenerRule(
                self,
                "ProductionRule",
                listener=serving,
                priority=1,
                conditions=[elbv2.ListenerCondition.path_patterns(["/*"])],
                action=elbv2.ListenerAction.weighted_forward([
                    elbv2.WeightedTargetGroup(target_group=self.target_group, weight=100),
                    elbv2.WeightedTargetGroup(target_group=self.alternate_target_group, weight=0),
                ]),
            )
        if access_logs_bucket is not None:
            self.load_balancer.log_access_logs(access_logs_bucket)
