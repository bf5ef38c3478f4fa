"""The Fargate service: the scale path. Rolling updates keep full capacity and roll back on failure."""
from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from components.nag import acknowledge

CONTAINER_NAME = "app"
MIGRATE_CONTAINER_NAME = "migrate"
HEALTH_CHECK_GRACE_SECONDS = 15


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
        task_cpu: int,
        task_memory_mib: int,
        arm64: bool,
        container_port: int,
        stop_timeout_seconds: int,
        log_retention: logs.RetentionDays,
        container_insights: bool,
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
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task_definition,
            desired_count=desired_count,
            # No NAT gateway: tasks reach ECR, Secrets Manager and CloudWatch through a public address;
            # the security group admits only the load balancer.
            assign_public_ip=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[self.security_group],
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=Duration.seconds(HEALTH_CHECK_GRACE_SECONDS),
        )
        self.service.attach_to_application_target_group(target_group)
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
