"""The stage's CloudWatch dashboard: traffic, errors, latency, targets, compute and database on one page."""
from __future__ import annotations

from typing import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_rds as rds
from constructs import Construct

from components.alarms import Alarms

PERIOD = Duration.minutes(1)
GIB = 1024**3


class Dashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage_name: str,
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_groups: Sequence[elbv2.ApplicationTargetGroup],
        database: rds.IDatabaseInstance,
        compute_cpu: cloudwatch.IMetric,
        compute_memory: cloudwatch.IMetric | None,
        compute_label: str,
        multi_az: bool,
        alarms: Alarms,
        http_5xx_percent: int,
        latency_p99_ms: int,
        db_cpu_percent: int,
        db_connections: int,
    ) -> None:
        super().__init__(scope, construct_id)
        # Thresholds appear as lines; the alarms themselves are not referenced, so the dashboard
        # deploys in the local emulator too (moto has no model for AWS::CloudWatch::Alarm).
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        lb = load_balancer.metrics
        # With ECS blue/green the service moves between two groups: latency from the load balancer
        # (percentiles do not add up), target counts per group.
        latency = (target_groups[0] if len(target_groups) == 1 else load_balancer).metrics
        group_names = ("", ) if len(target_groups) == 1 else ("", " (alternate group)")
        memory = [compute_memory] if compute_memory is not None else []
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"## liftoff {stage_name}\nAlarms notify the SNS topic in the service stack's `AlarmTopicArn` output; `liftoff status --stage {stage_name}` lists the ones firing.",
                width=24, height=2,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Requests", left=[lb.request_count(period=PERIOD)], width=8),
            cloudwatch.GraphWidget(
                title="5xx (targets and load balancer)",
                left=[
                    lb.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=PERIOD),
                    lb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=PERIOD),
                ],
                right=[alarms.http_5xx_share.metric],
                right_annotations=[cloudwatch.HorizontalAnnotation(value=http_5xx_percent, label="alarm")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Target response time (s)",
                left=[
                    latency.target_response_time(period=PERIOD, statistic="p50", label="p50"),
                    latency.target_response_time(period=PERIOD, statistic="p99", label="p99"),
                ],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=latency_p99_ms / 1000, label="p99 alarm")],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Targets",
                left=[
                    metric
                    for group, name in zip(target_groups, group_names)
                    for metric in (
                        group.metrics.healthy_host_count(period=PERIOD, statistic="Minimum", label=f"healthy{name}"),
                        group.metrics.unhealthy_host_count(period=PERIOD, statistic="Maximum", label=f"unhealthy{name}"),
                    )
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(title=f"{compute_label} CPU / memory (%)", left=[compute_cpu, *memory], width=8),
            cloudwatch.GraphWidget(
                title="Database CPU (%)",
                left=[database.metric_cpu_utilization(period=PERIOD)],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=db_cpu_percent, label="alarm")],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Database connections",
                left=[database.metric_database_connections(period=PERIOD, statistic="Maximum")],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=db_connections, label="alarm")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Database free storage (GiB)",
                left=[cloudwatch.MathExpression(
                    expression=f"free / {GIB}",
                    using_metrics={"free": database.metric_free_storage_space(period=PERIOD, statistic="Minimum")},
                    label="free GiB", period=PERIOD,
                )],
                width=8,
            ),
            cloudwatch.TextWidget(
                markdown=(
                    "**Replication**: Multi-AZ. The standby is written synchronously and is not readable, so RDS "
                    "publishes no replica lag for it; a failover shows as a short gap in the graphs above and an RDS event."
                    if multi_az else
                    "**Replication**: single-AZ (db_multi_az: false); no standby, no replica lag."
                ),
                width=8, height=6,
            ),
        )
