"""The Fargate service: the scale path, released by ECS's own deployment controller.

`rolling` replaces tasks keeping full capacity (circuit breaker with rollback). `blue_green`, `canary`
and `linear` start the new version beside the old one in the alternate target group, move production
traffic through the load balancer's listener rule (all at once, a first step, or equal steps), and keep
the old tasks for the bake time, so a rollback is a traffic move back, not a new deployment. Every
strategy rolls back on the release alarms.

Fail over: ECS replaces a task that fails the load balancer's health checks (after a short grace) with
one from the service's task definition, i.e. on the active version. With dynamic scaling (`max_count`),
Application Auto Scaling target tracking moves the task count between desired_count and max_count.
"""
from __future__ import annotations

from typing import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from components.nag import acknowledge
from config import ScaleOn

CONTAINER_NAME = "app"
MIGRATE_CONTAINER_NAME = "migrate"
HEALTH_CHECK_GRACE_SECONDS = 15
_STRATEGIES = {
    "rolling": ecs.DeploymentStrategy.ROLLING,
    "blue_green": ecs.DeploymentStrategy.BLUE_GREEN,
    "canary": ecs.DeploymentStrategy.CANARY,
    "linear": ecs.DeploymentStrategy.LINEAR,
}
# Target tracking: add tasks a minute after the last addition, remove one only after five quiet minutes,
# so a burst is met quickly and a dip does not take away capacity the next minute needs again.
SCALE_OUT_COOLDOWN_SECONDS = 60
SCALE_IN_COOLDOWN_SECONDS = 300


class EcsService(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        repository: ecr.IRepository,
        image_tag: str,
        target_group: elbv2.ApplicationTargetGroup,
        db_host: str,
        db_port: str,
        db_name: str,
        db_secret: secretsmanager.ISecret,
        desired_count: int,
        max_count: int | None,
        scale_on: ScaleOn | None,
        task_cpu: int,
        task_memory_mib: int,
        arm64: bool,
        container_port: int,
        stop_timeout_seconds: int,
        log_retention: logs.RetentionDays,
        container_insights: bool,
        deployment_strategy: str,
        bake_seconds: int,
        traffic_shift: tuple[float, int] | None,
        alternate_target_group: elbv2.ApplicationTargetGroup | None,
        production_rule: elbv2.ApplicationListenerRule | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(self, "SecurityGroup", vpc=vpc, description="liftoff service")
        cluster = ecs.Cluster(
            self, "Cluster", vpc=vpc,
            # Off: nothing rendered, the account's default applies (off unless someone turned it on).
            container_insights_v2=ecs.ContainerInsights.ENABLED if container_insights else None,
        )
        task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=task_cpu,
            memory_limit_mib=task_memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64 if arm64 else ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        image = ecs.ContainerImage.from_ecr_repository(repository, image_tag)
        environment = {"APP_VERSION": image_tag, "DB_HOST": db_host, "DB_PORT": db_port, "DB_NAME": db_name}
        secrets = {
            "DB_USER": ecs.Secret.from_secrets_manager(db_secret, "username"),
            "DB_PASSWORD": ecs.Secret.from_secrets_manager(db_secret, "password"),
        }
        # Every task migrates before it serves: migrations only expand the schema (the version still
        # running ignores the additions), the service's lock serialises tasks starting together, and
        # applied ones are skipped. A failed migration keeps the app container from starting.
        migrate = task_definition.add_container(
            MIGRATE_CONTAINER_NAME,
            image=image,
            command=["migrate"],
            essential=False,
            environment=environment,
            secrets=secrets,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="migrate", log_group=self.log_group),
        )
        app = task_definition.add_container(
            CONTAINER_NAME,
            image=image,
            port_mappings=[ecs.PortMapping(container_port=container_port)],
            environment={**environment, "PORT": str(container_port)},
            secrets=secrets,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="app", log_group=self.log_group),
            stop_timeout=Duration.seconds(stop_timeout_seconds),
        )
        app.add_container_dependencies(
            ecs.ContainerDependency(container=migrate, condition=ecs.ContainerDependencyCondition.SUCCESS)
        )
        rolling = deployment_strategy == "rolling"
        if not rolling and (alternate_target_group is None or production_rule is None):
            raise ValueError(f"deployment_strategy {deployment_strategy!r} needs an alternate target group and a production listener rule")
        shift = None
        if traffic_shift is not None:
            percent, step_seconds = traffic_shift
            shift = ecs.TrafficShiftConfig(step_percent=percent, step_bake_time=Duration.minutes(step_seconds // 60))
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task_definition,
            # Scaling: no DesiredCount in the template (Application Auto Scaling owns it), so a deploy keeps
            # the running count; CloudFormation starts a new service with one task and the floor lifts it.
            desired_count=None if scale_on else desired_count,
            # No NAT gateway: tasks reach ECR, Secrets Manager and CloudWatch through a public address;
            # the security group admits only the load balancer.
            assign_public_ip=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[self.security_group],
            min_healthy_percent=100,
            max_healthy_percent=200,
            deployment_strategy=None if rolling else _STRATEGIES[deployment_strategy],
            # Tasks that never become healthy fail the deployment and roll it back by themselves (AWS: *Amazon ECS
            # deployment failure detection*: the circuit breaker serves rolling and blue/green deployments; canary
            # and linear stop on the alarms). Blue/green's bad release then never took a request.
            circuit_breaker=(ecs.DeploymentCircuitBreaker(enable=True, rollback=True)
                             if deployment_strategy in ("rolling", "blue_green") else None),
            bake_time=None if rolling else Duration.minutes(bake_seconds // 60),
            canary_configuration=shift if deployment_strategy == "canary" else None,
            linear_configuration=shift if deployment_strategy == "linear" else None,
            health_check_grace_period=Duration.seconds(HEALTH_CHECK_GRACE_SECONDS),
        )
        if rolling:
            self.service.attach_to_application_target_group(target_group)
        else:
            # The alternate target creates the infrastructure role ECS assumes to rewrite the rule's weights.
            self.alternate_target = ecs.AlternateTarget(
                "AlternateTarget",
                alternate_target_group=alternate_target_group,
                production_listener=ecs.ListenerRuleConfiguration.application_listener_rule(production_rule),
            )
            self.service.load_balancer_target(
                container_name=CONTAINER_NAME, container_port=container_port, alternate_target=self.alternate_target,
            ).attach_to_application_target_group(target_group)
            # aws-cdk-lib adds DependsOn the rule beside the Ref to it; cfn-lint calls that redundant (W3005).
            self.service.node.default_child.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
            acknowledge(
                self.service.node.find_child("AlternateTargetRole"),
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers]",
                "The infrastructure role ECS assumes to move traffic between the two target groups; AWS maintains this policy for exactly that (read and modify listeners, rules and target groups), and only ecs.amazonaws.com can assume the role.",
            )
        if scale_on is not None:
            self._track(scale_on, floor=desired_count, ceiling=max_count, target_group=target_group)
        if not container_insights:
            acknowledge(
                cluster, "AwsSolutions-ECS4",
                "Container Insights is billed per metric (container_insights: false); the service's default CPU/memory metrics and the target group's health cover a small stage.",
            )
        acknowledge(
            task_definition, "AwsSolutions-ECS2",
            "Only non-secret settings (port, version, database host/port/name) are plain environment; credentials come from Secrets Manager as ECS secrets.",
        )
        acknowledge(
            task_definition.obtain_execution_role(), "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken supports no resource-level permission; every other action is scoped to the repository, log group and secret.",
        )

    def roll_back_on(self, alarms: Sequence[cloudwatch.IAlarm]) -> None:
        """ECS deployment alarms: any of them in ALARM during a deployment (bake included) rolls it back."""
        # aws-cdk-lib notes at synth that a Ref to an alarm "may cause a circular dependency": only when the
        # alarm reads the service's own metrics. These read the load balancer's and target groups'.
        self.service.enable_deployment_alarms(
            [alarm.alarm_name for alarm in alarms], behavior=ecs.AlarmBehavior.ROLLBACK_ON_ALARM,
        )

    # --- dynamic scaling (kept apart from the deployment settings above) -----------------------------

    def _track(self, scale_on: ScaleOn, *, floor: int, ceiling: int, target_group: elbv2.ApplicationTargetGroup) -> None:
        """Application Auto Scaling target tracking on the service's DesiredCount, between floor and ceiling."""
        self.scalable_task_count = self.service.auto_scale_task_count(min_capacity=floor, max_capacity=ceiling)
        cooldowns = dict(scale_in_cooldown=Duration.seconds(SCALE_IN_COOLDOWN_SECONDS),
                         scale_out_cooldown=Duration.seconds(SCALE_OUT_COOLDOWN_SECONDS))
        if scale_on.metric == "requests_per_target":
            self.scalable_task_count.scale_on_request_count(
                "ScaleOnRequests", requests_per_target=scale_on.target, target_group=target_group, **cooldowns)
        else:
            self.scalable_task_count.scale_on_cpu_utilization("ScaleOnCpu", target_utilization_percent=scale_on.target, **cooldowns)
