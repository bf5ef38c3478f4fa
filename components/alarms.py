"""The stage's alarms and the topic that pages someone: one place for every alarm liftoff makes.

Each paging alarm is on a condition a person has to act on, and says so in its description. They
wait minutes (3 of 5 for the 5xx share) so that a blip pages no one, which is far too slow to stop a
release. So two release alarms watch the same traffic a release changes, the 5xx share of requests and
unhealthy targets, over one-minute periods at stricter per-stage thresholds (1 % 5xx by default, ECS
Express Mode's bar). They are `deployment_alarms`: ECS rolls back on them (every strategy) and the EC2
activation watch reads their names from the stack output `DeploymentAlarmNames`. They notify no one:
a bad release is undone by them, and a lasting problem still trips the paging alarms.

With ECS blue/green, canary or linear the service moves between two target groups on every release;
the target-group alarms add both groups up, so they keep watching whichever one serves.
"""
from __future__ import annotations

from typing import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct


ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
GIB = 1024**3


class Alarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage_name: str,
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_groups: Sequence[elbv2.ApplicationTargetGroup],
        database: rds.IDatabaseInstance,
        auto_scaling_group_name: str | None,
        emails: Sequence[str],
        http_5xx_percent: int,
        latency_p99_ms: int,
        db_cpu_percent: int,
        db_free_storage_gib: int,
        db_connections: int,
        release_5xx_percent: int,
        release_unhealthy_targets: int,
        release_alarm_minutes: int,
    ) -> None:
        super().__init__(scope, construct_id)
        # Not encrypted at rest: CloudWatch cannot publish to a topic under the AWS managed SNS key, and
        # the notifications carry no customer data (docs/security.md).
        self.topic = sns.Topic(self, "Topic", display_name=f"liftoff {stage_name} alarms", enforce_ssl=True)
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self._stage_name = stage_name
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        # Both the targets' and the load balancer's own 5xx (502/503/504 when targets fail), as a share
        # of all requests; no requests means no errors.
        # The load balancer serves only this service, so its counts are its target groups' together.
        http_5xx_share = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * (target5xx + elb5xx) / requests, 0)",
            using_metrics={
                "requests": load_balancer.metrics.request_count(period=ONE_MINUTE),
                "target5xx": load_balancer.metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=ONE_MINUTE),
                "elb5xx": load_balancer.metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=ONE_MINUTE),
            },
            label="5xx share of requests (%)",
            period=ONE_MINUTE,
        )
        unhealthy = _summed(target_groups, "unhealthy", lambda tg: tg.metrics.unhealthy_host_count(period=ONE_MINUTE, statistic="Maximum"))
        healthy = _summed(target_groups, "healthy", lambda tg: tg.metrics.healthy_host_count(period=ONE_MINUTE, statistic="Minimum"))
        self.http_5xx_share = self._alarm(
            "Http5xxShare",
            metric=http_5xx_share,
            threshold=http_5xx_percent,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            description=f"more than {http_5xx_percent}% of requests answered 5xx in 3 of 5 minutes: check the service logs and `liftoff status`; roll back if a release just went out",
        )
        self.unhealthy_targets = self._alarm(
            "UnhealthyTargets",
            metric=unhealthy,
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            description="a target has failed its health checks for 3 minutes: see `liftoff status` for which one",
        )
        # Missing data counts as breaching: when every task or host is gone, the target group may report nothing.
        self.no_healthy_targets = self._alarm(
            "NoHealthyTargets",
            metric=healthy,
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            missing=cloudwatch.TreatMissingData.BREACHING,
            description="no healthy target for 2 minutes: the service is down",
        )
        self.latency = self._alarm(
            "LatencyP99",
            # Percentiles do not add up across target groups; the load balancer's covers both.
            metric=(target_groups[0].metrics if len(target_groups) == 1 else load_balancer.metrics).target_response_time(
                period=FIVE_MINUTES, statistic="p99"),
            threshold=latency_p99_ms / 1000,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            description=f"99th percentile response time above {latency_p99_ms} ms for 10 minutes",
        )
        self.db_cpu = self._alarm(
            "DatabaseCpu",
            metric=database.metric_cpu_utilization(period=FIVE_MINUTES, statistic="Average"),
            threshold=db_cpu_percent,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            description=f"database CPU above {db_cpu_percent}% for 15 minutes: look for slow queries, or a larger db_instance_class",
        )
        self.db_free_storage = self._alarm(
            "DatabaseFreeStorage",
            metric=database.metric_free_storage_space(period=FIVE_MINUTES, statistic="Minimum"),
            threshold=db_free_storage_gib * GIB,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            description=f"database free storage below {db_free_storage_gib} GiB: storage autoscaling is at db_max_allocated_storage_gib or cooling down; raise the maximum",
        )
        self.db_connections = self._alarm(
            "DatabaseConnections",
            metric=database.metric_database_connections(period=FIVE_MINUTES, statistic="Maximum"),
            threshold=db_connections,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            description=f"more than {db_connections} database connections, near the instance class's limit: check for leaked connections, or a larger class",
        )
        self.host_status_checks = None
        if auto_scaling_group_name is not None:
            self.host_status_checks = self._alarm(
                "HostStatusChecks",
                metric=cloudwatch.Metric(
                    namespace="AWS/EC2",
                    metric_name="StatusCheckFailed",
                    dimensions_map={"AutoScalingGroupName": auto_scaling_group_name},
                    statistic="Maximum",
                    period=FIVE_MINUTES,
                ),
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=2,
                datapoints_to_alarm=2,
                description="a host has failed its EC2 status checks for 10 minutes: terminate it and let the group replace it (README, Operations)",
            )
        minutes = release_alarm_minutes
        self.release_5xx_share = self._alarm(
            "Release5xxShare",
            metric=http_5xx_share,
            threshold=release_5xx_percent,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            description=f"release alarm: more than {release_5xx_percent}% of requests answered 5xx for {minutes} minute(s) in a row; a release in progress rolls back on it",
            notify=False,
        )
        self.release_unhealthy_targets = self._alarm(
            "ReleaseUnhealthyTargets",
            metric=unhealthy,
            threshold=release_unhealthy_targets,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            description=f"release alarm: {release_unhealthy_targets} or more targets failed their health checks for {minutes} minute(s) in a row; a release in progress rolls back on it",
            notify=False,
        )
        # What a rollout watches: the conditions a bad release causes within a minute or two.
        self.deployment_alarms: tuple[cloudwatch.Alarm, ...] = (self.release_5xx_share, self.release_unhealthy_targets)

    def _alarm(
        self,
        construct_id: str,
        *,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        evaluation_periods: int,
        datapoints_to_alarm: int,
        description: str,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
        notify: bool = True,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=missing,
            alarm_description=f"liftoff {self._stage_name}: {description}",
        )
        if notify:
            # OK too: whoever was paged learns when it is over.
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms[construct_id] = alarm
        return alarm


def _summed(target_groups: Sequence[elbv2.ApplicationTargetGroup], label: str, metric) -> cloudwatch.IMetric:
    """One group's metric as it is; several added up (a group with no targets reports nothing: 0)."""
    if len(target_groups) == 1:
        return metric(target_groups[0])
    names = {f"group{index}": metric(group) for index, group in enumerate(target_groups)}
    return cloudwatch.MathExpression(
        expression=" + ".join(f"FILL({name}, 0)" for name in names), using_metrics=names, label=f"{label} targets", period=ONE_MINUTE,
    )
