"""What running `liftoff` on one stage takes, as IAM statements: the release gates on the stage's service stack, its
images, its ledger, what an activation observes, the ec2 hosts' gates and reports, the ecs migrate task. The GitHub
deploy roles (components/github_oidc.py) and the operators' managed policy (components/operator_policy.py) are
both made of these, so a person and the pipeline can do the same verbs and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Stack, Token
from aws_cdk import aws_iam as iam

ECR_PUSH_ACTIONS = (
    "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage",
)
# An image's tags, digest and scan; its manifest and config blob carry the schema contract a release declares.
ECR_READ_ACTIONS = ("ecr:DescribeImages", "ecr:DescribeImageScanFindings", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
STACK_READ_ACTIONS = ("cloudformation:DescribeStacks",)
RELEASE_GATE_ACTIONS = ("cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents",
                        "cloudformation:GetTemplate", "cloudformation:UpdateStack")
LEDGER_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query")
# What `liftoff` reads to verify an activation; these describe calls take no resource-level ARN.
OBSERVE_ACTIONS = (
    "ecs:DescribeServices", "ecs:DescribeTaskDefinition", "ecs:ListTasks", "ecs:DescribeTasks",
    "elasticloadbalancing:DescribeTargetHealth", "autoscaling:DescribeAutoScalingGroups", "ssm:DescribeAssociation",
    # ECS blue/green, canary, linear: the deployment in progress and what is warm (`liftoff status`, `rollback`).
    "ecs:ListServiceDeployments", "ecs:DescribeServiceDeployments", "ecs:DescribeServiceRevisions",
)
# `liftoff status` shows how the stage scales (the target-tracking policies and the last scaling activities, ec2: EC2
# Auto Scaling, ecs: Application Auto Scaling); none of these describe calls takes a resource-level ARN.
SCALING_READ_ACTIONS = (
    "autoscaling:DescribePolicies", "autoscaling:DescribeScalingActivities",
    "application-autoscaling:DescribeScalableTargets", "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScalingActivities",
)
# `liftoff rollback` during an ECS bake moves traffic back by stopping the stage's deployment in progress.
BAKE_ROLLBACK_ACTIONS = ("ecs:StopServiceDeployment",)
# An ec2 activate/rollback holds scale-in off its hosts for the update (docs/scaling.md): suspended, then resumed.
SCALE_IN_HOLD_ACTIONS = ("autoscaling:SuspendProcesses", "autoscaling:ResumeProcesses")
# An ec2 activation runs its gate on the fleet's canary host alone, and `liftoff migrate` its migrations on one
# host, through Run Command with the stage's own documents; the invocation's result has no resource-level ARN.
RUN_COMMAND_ACTIONS = ("ssm:SendCommand",)
COMMAND_RESULT_ACTIONS = ("ssm:GetCommandInvocation",)
HOST_REPORT_ACTIONS = ("ssm:GetParametersByPath",)
REDRIVE_ACTIONS = ("ssm:StartAssociationsOnce",)
# An activation watches the stage's release alarms through its bake; reading composite alarms needs `*`.
ALARM_READ_ACTIONS = ("cloudwatch:DescribeAlarms",)
# `liftoff migrate` on an ecs stage: the service's task definition re-registered as `<family>-migrate` with the
# version's image, run once, its output read, the revision deregistered (neither registration call takes a
# resource-level permission).
MIGRATE_REGISTER_ACTIONS = ("ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition")
MIGRATE_RUN_ACTIONS = ("ecs:RunTask",)
MIGRATE_LOG_ACTIONS = ("logs:GetLogEvents",)


def compact(name: str) -> str:
    """A name as CDK's unique ids spell it: letters and digits only."""
    return "".join(character for character in name if character.isalnum())


@dataclass(frozen=True)
class StageTargets:
    """The names a stage's release principals may act on (CloudFormation generates the repository and table names
    with the stack name in front, so a stack-name prefix scopes them without a cross-stack reference)."""

    stage: str
    region: str
    registry_stack: str
    data_stack: str
    service_stack: str
    owns_registry: bool


def release_statements(stack: Stack, targets: StageTargets) -> tuple[list[iam.PolicyStatement], list[str]]:
    """The release verbs on `targets`, and each resource pattern that ends in a wildcard (for cdk-nag's list)."""
    wildcards: list[str] = []
    # cdk-nag names an unresolved account or region the way CloudFormation's pseudo parameters are written.
    account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
    region_label = "<AWS::Region>" if Token.is_unresolved(targets.region) else targets.region

    def arn(service: str, resource: str, name: str, *, region: str = targets.region) -> str:
        # Every name here ends in a wildcard (see the acknowledgement below); each is listed for cdk-nag.
        label = name.replace(stack.account, account).replace(targets.region, region_label)
        wildcards.append(f"arn:<AWS::Partition>:{service}:{region_label if region == targets.region else region}:{account}:{resource}/{label}")
        return stack.format_arn(service=service, region=region, resource=resource, resource_name=name,
                                arn_format=ArnFormat.SLASH_RESOURCE_NAME)

    def group_arn(name: str) -> str:
        wildcards.append(f"arn:<AWS::Partition>:autoscaling:{region_label}:{account}:autoScalingGroup:*:"
                         f"autoScalingGroupName/{name}")
        return stack.format_arn(service="autoscaling", region=targets.region, resource="autoScalingGroup",
                                resource_name=f"*:autoScalingGroupName/{name}", arn_format=ArnFormat.COLON_RESOURCE_NAME)

    def log_group_arn(name: str) -> str:
        # A stream's ARN is the group's followed by `:log-stream:<name>`: the wildcard covers both.
        wildcards.append(f"arn:<AWS::Partition>:logs:{region_label}:{account}:log-group:{name}")
        return stack.format_arn(service="logs", region=targets.region, resource="log-group", resource_name=name,
                                arn_format=ArnFormat.COLON_RESOURCE_NAME)

    def stack_arn(name: str) -> str:
        return arn("cloudformation", "stack", f"{name}/*")

    repository = arn("ecr", "repository", f"{targets.registry_stack}-*")
    ledger = arn("dynamodb", "table", f"{targets.data_stack}-*")
    statements = [
        iam.PolicyStatement(sid="ReadStageStacks", actions=list(STACK_READ_ACTIONS),
                            resources=[stack_arn(targets.registry_stack), stack_arn(targets.data_stack)]),
        iam.PolicyStatement(sid="ReleaseGates", actions=list(RELEASE_GATE_ACTIONS), resources=[stack_arn(targets.service_stack)]),
        # No iam:PassRole of the stack's execution role: an update that names no RoleARN keeps the stack's role,
        # and CloudFormation checks no PassRole for it (UpdateStack's RoleARN in the API reference); liftoff names none.
        iam.PolicyStatement(sid="ReadImages", actions=list(ECR_READ_ACTIONS), resources=[repository]),
        iam.PolicyStatement(sid="ReleaseLedger", actions=list(LEDGER_ACTIONS), resources=[ledger]),
        iam.PolicyStatement(sid="ObserveRollout", actions=list(OBSERVE_ACTIONS), resources=["*"]),
        iam.PolicyStatement(sid="ReadScaling", actions=list(SCALING_READ_ACTIONS), resources=["*"]),
        # CloudFormation names the stage's cluster and service after the service stack.
        # The Service Authorization Reference lists both the service and the deployment as its resources.
        iam.PolicyStatement(sid="StopBakingDeployment", actions=list(BAKE_ROLLBACK_ACTIONS),
                            resources=[arn("ecs", "service-deployment", f"{targets.service_stack}-*/{targets.service_stack}-*/*"),
                                       arn("ecs", "service", f"{targets.service_stack}-*/{targets.service_stack}-*")]),
        # CloudFormation names the group `<service stack>-<logical id>-<suffix>`; its ARN has a generated id before the name.
        iam.PolicyStatement(sid="HoldScaleIn", actions=list(SCALE_IN_HOLD_ACTIONS),
                            resources=[group_arn(f"{targets.service_stack}-*")]),
        # CloudFormation names the documents `<service stack>-<logical id>-<suffix>`; the instance ids are only
        # known at launch (the group replaces hosts), so any instance, with only this stage's documents.
        iam.PolicyStatement(sid="RunHostGates", actions=list(RUN_COMMAND_ACTIONS),
                            resources=[arn("ssm", "document", f"{targets.service_stack}-*"),
                                       arn("ec2", "instance", "*")]),
        iam.PolicyStatement(sid="ReadCommandResults", actions=list(COMMAND_RESULT_ACTIONS), resources=["*"]),
        # Each ec2 host's own report (`/liftoff/<service stack>/hosts/<instance-id>`): what it really serves.
        iam.PolicyStatement(sid="ReadHostReports", actions=list(HOST_REPORT_ACTIONS),
                            resources=[arn("ssm", "parameter", f"liftoff/{targets.service_stack}/hosts"),
                                       arn("ssm", "parameter", f"liftoff/{targets.service_stack}/hosts/*")]),
        # `stage`/`activate` of what the stack already names re-run the gate where hosts disagree; the ids are generated.
        iam.PolicyStatement(sid="RedriveHostGates", actions=list(REDRIVE_ACTIONS), resources=[arn("ssm", "association", "*")]),
        iam.PolicyStatement(sid="WatchReleaseAlarms", actions=list(ALARM_READ_ACTIONS), resources=["*"]),
        iam.PolicyStatement(sid="RegisterMigrateTask", actions=list(MIGRATE_REGISTER_ACTIONS), resources=["*"]),
        # CDK names the task family after the stack without its dashes (`stagingserviceEcsTask...`); the
        # cluster carries the stack's name: only the migrate family, only in the stage's own cluster.
        iam.PolicyStatement(sid="RunMigrateTask", actions=list(MIGRATE_RUN_ACTIONS),
                            resources=[arn("ecs", "task-definition", f"{compact(targets.service_stack)}*-migrate:*")],
                            conditions={"ArnLike": {"ecs:cluster": arn("ecs", "cluster", f"{targets.service_stack}-*")}}),
        # The one-off task runs as the service's task and execution roles (named `<service stack>-...`).
        iam.PolicyStatement(sid="PassMigrateTaskRoles", actions=["iam:PassRole"],
                            resources=[arn("iam", "role", f"{targets.service_stack}-*", region="")],
                            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
        iam.PolicyStatement(sid="ReadMigrateOutput", actions=list(MIGRATE_LOG_ACTIONS),
                            resources=[log_group_arn(f"{targets.service_stack}-*")]),
    ]
    return statements, list(dict.fromkeys(wildcards))


def push_statements(stack: Stack, targets: StageTargets) -> list[iam.PolicyStatement]:
    """Pushing release images to the stage's own repository (CI's job, not a person's)."""
    repository = stack.format_arn(service="ecr", region=targets.region, resource="repository",
                                  resource_name=f"{targets.registry_stack}-*", arn_format=ArnFormat.SLASH_RESOURCE_NAME)
    return [
        iam.PolicyStatement(sid="PushImages", actions=list(ECR_PUSH_ACTIONS), resources=[repository]),
        # A registry login token is account-wide by design; the push itself is scoped above.
        iam.PolicyStatement(sid="RegistryLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
    ]


RELEASE_WILDCARD_REASON = (
    "Scoped to this stage by name: CloudFormation generates repository and table names with the stack "
    "name in front and stack ARNs end in a generated id; the CDK execution role carries the bootstrap qualifier."
)
RELEASE_STAR_REASON = (
    "ssm:GetCommandInvocation, ecs:Register/DeregisterTaskDefinition and the ECS/ELB/Auto Scaling/SSM describe calls "
    "liftoff makes to verify a rollout and show how the stage scales support no resource-level ARN, and cloudwatch:DescribeAlarms must be on * to "
    "read composite alarms; all of them are read-only except the migrate task's registration, which runs nothing "
    "(RunTask is scoped to the stage)."
)
