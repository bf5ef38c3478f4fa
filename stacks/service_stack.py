from __future__ import annotations

from aws_cdk import CfnOutput, CfnParameter, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from aws_cdk import aws_cloudwatch as cloudwatch

from components.alarms import Alarms
from components.dashboard import Dashboard
from components.database import Database
from components.domain import Domain
from components.retention import log_retention
from components.ec2_service import Ec2Service
from components.ecs_service import EcsService
from components.load_balancer import LoadBalancer
from components.nag import acknowledge
from components.operator_policy import OperatorPolicy
from components.release_permissions import StageTargets
from config import RELEASE_TAG_DESCRIPTION, RELEASE_TAG_PATTERN, StageConfig

IMAGE_TAG_PARAMETER = "ImageTag"
STAGED_IMAGE_TAG_PARAMETER = "StagedImageTag"
ACTIVATE_CONCURRENCY_PARAMETER = "ActivateConcurrency"
# One host after the other (the first is the fleet's canary), or every host at once: a switch that is only
# a flip on every host (a warm rollback) need not wait host by host. liftoff chooses per switch.
ACTIVATE_CONCURRENCIES = ("1", "25%", "100%")


class ServiceStack(Stack):
    """Stateless: the load balancer and the compute. Safe to destroy and recreate at any time."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        vpc: ec2.IVpc,
        repository: ecr.IRepository,
        database: Database,
        access_logs_bucket: s3.IBucket | None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # The activation gate: changing this parameter is what switches the running version. No
        # default, so a first deploy must name a release explicitly.
        image_tag = CfnParameter(
            self,
            IMAGE_TAG_PARAMETER,
            type="String",
            description=f"The active release: {RELEASE_TAG_DESCRIPTION}. Changing it rolls the service to that image.",
            allowed_pattern=RELEASE_TAG_PATTERN,
            constraint_description=f"must be {RELEASE_TAG_DESCRIPTION}; mutable tags such as latest are refused",
        )
        # The update gate: the version pulled onto the hosts (ec2) or recorded as next (ecs); no traffic moves.
        staged_image_tag = CfnParameter(
            self,
            STAGED_IMAGE_TAG_PARAMETER,
            type="String",
            description=f"The staged release: {RELEASE_TAG_DESCRIPTION}. Changing it pre-pulls the image; nothing restarts.",
            allowed_pattern=RELEASE_TAG_PATTERN,
            constraint_description=f"must be {RELEASE_TAG_DESCRIPTION}; mutable tags such as latest are refused",
        )
        # Both gates are also readable where hosts and people look; a new host boots into the active one.
        self.active_tag_parameter = ssm.StringParameter(
            self, "ActiveImageTagParameter",
            string_value=image_tag.value_as_string,
            description=f"liftoff {stage.name}: the active release tag (owned by the {construct_id} stack)",
        )
        self.staged_tag_parameter = ssm.StringParameter(
            self, "StagedImageTagParameter",
            string_value=staged_image_tag.value_as_string,
            description=f"liftoff {stage.name}: the staged release tag (owned by the {construct_id} stack)",
        )
        self.domain = Domain(
            self, "Domain",
            domain_name=stage.domain_name,
            hosted_zone_id=stage.hosted_zone_id,
            hosted_zone_name=stage.hosted_zone_name,
            certificate_arn=stage.certificate_arn,
        ) if stage.serves_https else None
        self.load_balancer = LoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            target_type=elbv2.TargetType.IP if stage.compute == "ecs" else elbv2.TargetType.INSTANCE,
            container_port=stage.container_port,
            health_check_path=stage.health_check_path,
            drain_seconds=stage.drain_seconds,
            certificate=self.domain.certificate if self.domain else None,
            access_logs_bucket=access_logs_bucket,
            alternate_target_group=stage.compute == "ecs" and stage.deployment_strategy != "rolling",
        )
        if self.domain is not None:
            self.domain.point_at(self.load_balancer.load_balancer)
        common = dict(
            vpc=vpc,
            repository=repository,
            image_tag=image_tag.value_as_string,
            target_group=self.load_balancer.target_group,
            desired_count=stage.desired_count,
            max_count=stage.max_count,
            scale_on=stage.scale_on,
            arm64=stage.cpu_architecture == "arm64",
            container_port=stage.container_port,
            stop_timeout_seconds=stage.stop_timeout_seconds,
            log_retention=log_retention(stage.log_retention_days),
            db_host=database.instance.db_instance_endpoint_address,
            db_port=database.instance.db_instance_endpoint_port,
            db_name=database.database_name,
            db_secret=database.secret,
        )
        if stage.compute == "ecs":
            self.compute = EcsService(
                self, "Ecs", task_cpu=stage.task_cpu, task_memory_mib=stage.task_memory_mib,
                container_insights=stage.container_insights,
                deployment_strategy=stage.deployment_strategy, bake_seconds=stage.bake_seconds,
                traffic_shift=stage.traffic_shift,
                alternate_target_group=self.load_balancer.alternate_target_group,
                production_rule=self.load_balancer.production_rule,
                **common,
            )
            compute_outputs = {
                "ClusterName": self.compute.service.cluster.cluster_name,
                "EcsServiceName": self.compute.service.service_name,
            }
        else:
            activate_concurrency = CfnParameter(
                self,
                ACTIVATE_CONCURRENCY_PARAMETER,
                type="String",
                default=ACTIVATE_CONCURRENCIES[0],
                allowed_values=list(ACTIVATE_CONCURRENCIES),
                description="How many hosts the activation gate switches at once: 1 (each host after the one "
                            "before passed), 25% (waves of a quarter of the fleet, once the fleet's canary host "
                            "passed alone) or 100% (a warm rollback, a flip on every host). liftoff sets it on "
                            "every switch.",
            )
            self.compute = Ec2Service(
                self,
                "Ec2",
                staged_image_tag=staged_image_tag.value_as_string,
                activate_concurrency=activate_concurrency.value_as_string,
                active_tag_parameter=self.active_tag_parameter,
                instance_type=stage.instance_type,
                ami_id=stage.ami_id,
                health_check_path=stage.health_check_path,
                drain_seconds=stage.drain_seconds,
                activation=stage.activation,
                container_memory_mib=stage.container_memory_mib,
                bake_seconds=stage.bake_seconds,
                canary=stage.canary,
                **common,
            )
            compute_outputs = {
                "AutoScalingGroupName": self.compute.auto_scaling_group.auto_scaling_group_name,
                "StageAssociationId": self.compute.stage_association.attr_association_id,
                "ActivateAssociationId": self.compute.activate_association.attr_association_id,
                "MigrateDocumentName": self.compute.migrate_document.ref,
                # liftoff runs this gate on the fleet's canary host alone (Run Command) before the stack moves.
                "ActivateDocumentName": self.compute.activate_document.ref,
                # Each host's report: one SSM parameter per instance, <path><instance-id> (docs/release-flow.md).
                "HostReportPath": self.compute.host_report_path,
            }
        # The rule lives here, not in the data stack, so the stateful stack never depends on this one.
        ec2.CfnSecurityGroupIngress(
            self,
            "DatabaseFromService",
            group_id=database.security_group.security_group_id,
            source_security_group_id=self.compute.security_group.security_group_id,
            ip_protocol="tcp",
            from_port=database.instance.instance_endpoint.port,
            to_port=database.instance.instance_endpoint.port,
            description=f"{stage.name} service to its database",
        )
        acknowledge(
            self.load_balancer.security_group, "AwsSolutions-EC23",
            "The load balancer is the service's public entry point: its listener ports are open to the internet by design.",
        )
        if not stage.alb_access_logs:
            acknowledge(
                self.load_balancer.load_balancer, "AwsSolutions-ELB2",
                "Access logs need an S3 bucket and its costs (alb_access_logs: false); the stage relies on target-group metrics and service logs until traffic warrants them.",
            )
        thresholds = stage.alarm_thresholds
        self.alarms = Alarms(
            self, "Alarms",
            stage_name=stage.name,
            load_balancer=self.load_balancer.load_balancer,
            target_groups=self.load_balancer.target_groups,
            database=database.instance,
            auto_scaling_group_name=(
                self.compute.auto_scaling_group.auto_scaling_group_name if stage.compute == "ec2" else None
            ),
            emails=stage.alarm_emails,
            http_5xx_percent=thresholds.http_5xx_percent,
            latency_p99_ms=thresholds.latency_p99_ms,
            db_cpu_percent=thresholds.db_cpu_percent,
            db_free_storage_gib=thresholds.db_free_storage_gib,
            db_connections=stage.db_connections_alarm_threshold,
            release_5xx_percent=thresholds.release_5xx_percent,
            release_unhealthy_targets=thresholds.release_unhealthy_targets,
            release_alarm_minutes=thresholds.release_alarm_minutes,
        )
        if stage.compute == "ecs":
            self.compute.roll_back_on(self.alarms.deployment_alarms)
            compute_cpu: cloudwatch.IMetric = self.compute.service.metric_cpu_utilization()
            compute_memory: cloudwatch.IMetric | None = self.compute.service.metric_memory_utilization()
        else:
            # Host memory needs the CloudWatch agent, which the hosts do not run; CPU comes from EC2.
            compute_cpu = cloudwatch.Metric(
                namespace="AWS/EC2", metric_name="CPUUtilization", statistic="Average",
                dimensions_map={"AutoScalingGroupName": self.compute.auto_scaling_group.auto_scaling_group_name},
            )
            compute_memory = None
        self.dashboard = Dashboard(
            self, "Dashboard",
            stage_name=stage.name,
            load_balancer=self.load_balancer.load_balancer,
            target_groups=self.load_balancer.target_groups,
            database=database.instance,
            compute_cpu=compute_cpu,
            compute_memory=compute_memory,
            compute_label="Tasks" if stage.compute == "ecs" else "Hosts (CPU only)",
            multi_az=stage.db_multi_az,
            alarms=self.alarms,
            http_5xx_percent=thresholds.http_5xx_percent,
            latency_p99_ms=thresholds.latency_p99_ms,
            db_cpu_percent=thresholds.db_cpu_percent,
            db_connections=stage.db_connections_alarm_threshold,
        )
        # The people who run liftoff on this stage get exactly the release verbs on it (docs/security.md).
        self.operator_policy = OperatorPolicy(self, "Operators", targets=StageTargets(
            stage=stage.name, region=self.region, registry_stack=stage.registry_stack_name,
            data_stack=stage.data_stack_name, service_stack=stage.service_stack_name,
            owns_registry=stage.share_registry_with is None,
        ))
        host = stage.domain_name or self.load_balancer.load_balancer.load_balancer_dns_name
        CfnOutput(self, "ServiceUrl", value=f"{self.load_balancer.url_scheme}://{host}")
        CfnOutput(self, "AlarmTopicArn", value=self.alarms.topic.topic_arn)
        # What a release watches in its bake window (ec2: `liftoff activate`; ecs: the deployment itself).
        CfnOutput(self, "DeploymentAlarmNames", value=Fn.join(",", [alarm.alarm_name for alarm in self.alarms.deployment_alarms]))
        CfnOutput(self, "DashboardName", value=self.dashboard.dashboard.dashboard_name)
        CfnOutput(self, "TargetGroupArn", value=self.load_balancer.target_group.target_group_arn)
        CfnOutput(self, "ComputeMode", value=stage.compute)
        if self.load_balancer.alternate_target_group is not None:
            CfnOutput(self, "AlternateTargetGroupArn", value=self.load_balancer.alternate_target_group.target_group_arn)
        # Where the repository URI and the database endpoint are (outputs of those stacks; re-exporting
        # an imported value here is what cfn-lint W6001 warns against).
        CfnOutput(self, "RegistryStackName", value=stage.registry_stack_name)
        CfnOutput(self, "DataStackName", value=stage.data_stack_name)
        CfnOutput(self, "ActiveImageTagParameterName", value=self.active_tag_parameter.parameter_name)
        CfnOutput(self, "StagedImageTagParameterName", value=self.staged_tag_parameter.parameter_name)
        CfnOutput(self, "LogGroupName", value=self.compute.log_group.log_group_name)
        CfnOutput(self, "OperatorPolicyArn", value=self.operator_policy.policy.managed_policy_arn)
        for name, value in compute_outputs.items():
            CfnOutput(self, name, value=value)
