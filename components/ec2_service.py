"""The EC2 service: the startup stage. Each host runs the active version as a systemd unit.

Versions move on the hosts in place, through two State Manager associations whose parameters are
the stack's gate parameters: changing `StagedImageTag` pulls the image everywhere (no restart);
changing `ImageTag` restarts the unit on the new image one host at a time and fails the stack update
(so CloudFormation rolls the parameter back) if a host does not come back healthy. Instances are
replaced only when the launch template changes (AMI, instance type, host files), never on a version
switch or a desired-count edit.

Fail over: the group checks hosts by the load balancer's health checks too (not only EC2's status
checks), so a host that stops answering is replaced, and the replacement boots into the active version
(liftoff-boot reads it from the stack's SSM parameter). With dynamic scaling (`max_count`), target
tracking moves the group between desired_count and max_count; see docs/scaling.md.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
from pathlib import Path

import jsii

from aws_cdk import Annotations, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from components.nag import acknowledge
from config import MAX_DESIRED_COUNT, RELEASE_TAG_PATTERN, Canary, ScaleOn

HOST_FILES = Path(__file__).parent / "ec2_host"
UNIT_DIR = "etc/systemd/system"
UNITS = ("liftoff-app.service", "liftoff-slot@.service", "liftoff-proxy.service", "liftoff-report.service")
# The slots' loopback ports: two fixed ports unless the container's own port is one of them.
SLOT_PORTS = (18081, 18082)
SLOT_PORTS_ALTERNATE = (28081, 28082)
SCRIPTS_PATH = "opt/liftoff/bin"
# AL2023 publishes its current AMI under these names; resolved when an instance launches, so the
# launch template (and hence the fleet) does not change when AWS publishes a new image.
LATEST_AL2023_PARAMETER = {
    "arm64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
    "x86_64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
}
HEALTH_TIMEOUT_SECONDS = 60
# The service contract's readiness path (docs/service-contract.md): a new slot takes requests only once it
# answers 200 there. A warm-up (caches, a connection pool) may take this long; a database down longer
# fails the activation safely (the old version keeps serving).
READY_CHECK_PATH = "/readyz"
READY_TIMEOUT_SECONDS = 180
PULL_ALLOWANCE_SECONDS = 120
BOOT_SIGNAL_TIMEOUT = Duration.minutes(15)
# CloudFormation's ceiling for an association's WaitForSuccessTimeoutSeconds (48 hours).
MAX_ASSOCIATION_WAIT_SECONDS = 172800
ROOT_VOLUME_GIB = 20
# A new host is judged by the load balancer's checks only after this: the boot (packages, the pull,
# migrate, the first passing checks) takes one to three minutes on AL2023; a host still failing after
# five is broken, and is replaced.
HEALTH_CHECK_GRACE_SECONDS = 300
# Dynamic scaling: a new host's metrics join the group's average once it can serve (about the boot).
HOST_WARMUP_SECONDS = 180


def host_files_archive() -> bytes:
    """The unit and scripts as a reproducible .tar.gz: same files, same bytes, same launch template."""
    buffer = io.BytesIO()
    # mtime=0 and fixed owners keep the archive (and so the launch template) identical across synths.
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        entries = [(HOST_FILES / unit, f"{UNIT_DIR}/{unit}", 0o644) for unit in UNITS]
        entries += [
            (path, f"{SCRIPTS_PATH}/{path.name}", 0o644 if path.suffix == ".sh" else 0o755)
            for path in sorted((HOST_FILES / "bin").iterdir())
        ]
        for source, name, mode in entries:
            data = source.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), mode, 0, 0, 0, "root", "root"
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# EC2 refuses user data over 16 KB (before base64); the host files are several times that, so they travel as an
# asset in the bootstrap bucket and user data copies them down.
USER_DATA_LIMIT_BYTES = 16 * 1024


def host_files_archive_path() -> Path:
    """The archive as a file for the asset (named by its content: a synth reuses it, a change makes a new one)."""
    archive = host_files_archive()
    path = Path(tempfile.gettempdir()) / f"liftoff-host-files-{hashlib.sha256(archive).hexdigest()[:16]}.tgz"
    if not path.exists() or path.read_bytes() != archive:
        partial = path.with_suffix(".partial")
        partial.write_bytes(archive)
        partial.replace(path)
    return path


def gate_document(*, description: str, script: str, timeout_seconds: int) -> dict:
    """An SSM Command document running one host script with the validated tag as its only input."""
    return {
        "schemaVersion": "2.2",
        "description": description,
        "parameters": {
            "ImageTag": {
                "type": "String",
                "description": "A release tag (semantic version or git sha)",
                # SSM refuses anything else before a shell sees it, so the tag cannot inject commands.
                "allowedPattern": RELEASE_TAG_PATTERN,
            }
        },
        "mainSteps": [
            {
                "action": "aws:runShellScript",
                "name": "run",
                "inputs": {"runCommand": [f"/opt/liftoff/bin/{script} '{{{{ImageTag}}}}'"], "timeoutSeconds": str(timeout_seconds)},
            }
        ],
    }


# What one migrate run may take on a host (the service's statement_timeout is 60 s per step).
MIGRATE_SECONDS = 900
# Contract step ids the release tool allows, space separated (or none); none starts with '-' (never an option).
CONTRACT_IDS_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,127}( [A-Za-z0-9][A-Za-z0-9_.-]{0,127}){0,31})?$"


def migrate_document(*, timeout_seconds: int) -> dict:
    """The SSM Command document `liftoff migrate` sends to one host: `liftoff-migrate TAG [CONTRACT_ID ...]`."""
    document = gate_document(description="liftoff migrate: run a release's migrations once on this host "
                                         "(the contract steps named are the ones the stage allows now)",
                             script="liftoff-migrate", timeout_seconds=timeout_seconds)
    document["parameters"]["AllowContracts"] = {
        "type": "String", "default": "", "allowedPattern": CONTRACT_IDS_PATTERN,
        "description": "Contract step ids allowed now, space separated (the release tool decides)",
    }
    # Unquoted on purpose: each id becomes its own argument; the pattern admits no shell character.
    document["mainSteps"][0]["inputs"]["runCommand"] = ["/opt/liftoff/bin/liftoff-migrate '{{ImageTag}}' {{AllowContracts}}"]
    return document


class Ec2Service(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        repository: ecr.IRepository,
        image_tag: str,
        staged_image_tag: str,
        activate_concurrency: str,
        active_tag_parameter: ssm.IStringParameter,
        target_group: elbv2.ApplicationTargetGroup,
        db_host: str,
        db_port: str,
        db_name: str,
        db_secret: secretsmanager.ISecret,
        desired_count: int,
        max_count: int | None,
        scale_on: ScaleOn | None,
        instance_type: str,
        arm64: bool,
        ami_id: str | None,
        container_port: int,
        health_check_path: str,
        stop_timeout_seconds: int,
        drain_seconds: int,
        activation: str,
        container_memory_mib: int,
        bake_seconds: int,
        canary: Canary | None,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        if (canary is not None) != (activation == "slots"):
            # Without CANARY_* a slots host would run the scripts' own defaults, not the stage's.
            raise ValueError(f"canary settings go with activation 'slots' and only with it (StageConfig.canary); "
                             f"got activation {activation!r} and canary {canary!r}")
        region = Stack.of(self).region
        self.security_group = ec2.SecurityGroup(self, "SecurityGroup", vpc=vpc, description="liftoff service")
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)

        role = iam.Role(
            self,
            "HostRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="liftoff host: pull images, read the DB secret and active tag, write logs, drain itself",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        repository.grant_pull(role)
        db_secret.grant_read(role)
        active_tag_parameter.grant_read(role)
        self.log_group.grant_write(role)
        host_files = s3_assets.Asset(self, "HostFiles", path=str(host_files_archive_path()))
        # This one object, not the bootstrap bucket (the asset's own grant_read is every object in it).
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[host_files.bucket.arn_for_objects(host_files.s3_object_key)])
        )
        # Host reports: one SSM parameter per instance under this path, written by the host scripts and read
        # by the release tool (and by a booting host, to join the version its peers serve).
        self.host_report_path = f"/liftoff/{Stack.of(self).stack_name}/hosts/"
        # Pseudo parameters, not the stage's account and region: one ARN form (and one nag acknowledgment) everywhere.
        reports = f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter/{self.host_report_path.strip('/')}"
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ssm:PutParameter", "ssm:GetParameter", "ssm:GetParametersByPath"],
                resources=[reports, f"{reports}/*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                # A booting host finds its in-service peers (these actions take no resource-level permission).
                actions=["autoscaling:DescribeAutoScalingInstances", "autoscaling:DescribeAutoScalingGroups"],
                resources=["*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                resources=[target_group.target_group_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["elasticloadbalancing:DescribeTargetHealth"], resources=["*"])
        )

        architecture = "arm64" if arm64 else "x86_64"
        if ami_id:
            machine_image: ec2.IMachineImage = PinnedImage(ami_id)
        else:
            machine_image = ec2.MachineImage.resolve_ssm_parameter_at_launch(
                LATEST_AL2023_PARAMETER[architecture], os=ec2.OperatingSystemType.LINUX
            )
        host_env = {
            "AWS_REGION": region,
            "REPOSITORY_URI": repository.repository_uri,
            "CONTAINER_PORT": str(container_port),
            "HEALTH_CHECK_PATH": health_check_path,
            "DB_HOST": db_host,
            "DB_PORT": db_port,
            "DB_NAME": db_name,
            "DB_SECRET_ARN": db_secret.secret_arn,
            "LOG_GROUP": self.log_group.log_group_name,
            "STOP_TIMEOUT_SECONDS": str(stop_timeout_seconds),
            "DRAIN_SECONDS": str(drain_seconds),
            "TARGET_GROUP_ARN": target_group.target_group_arn,
            "HEALTH_TIMEOUT_SECONDS": str(HEALTH_TIMEOUT_SECONDS),
            "READY_CHECK_PATH": READY_CHECK_PATH,
            "READY_TIMEOUT_SECONDS": str(READY_TIMEOUT_SECONDS),
            "HOST_REPORT_PATH": self.host_report_path,
            "ACTIVE_TAG_PARAMETER": active_tag_parameter.parameter_name,
            "ACTIVATION": activation,
            "CONTAINER_MEMORY_MIB": str(container_memory_mib),
        }
        if activation == "slots":
            slot_ports = SLOT_PORTS if container_port not in SLOT_PORTS else SLOT_PORTS_ALTERNATE
            host_env.update({
                "SLOT_A_PORT": str(slot_ports[0]),
                "SLOT_B_PORT": str(slot_ports[1]),
                "BAKE_SECONDS": str(bake_seconds),
                "CANARY_PERCENT": str(canary.percent),
                "CANARY_SECONDS": str(canary.seconds),
                "CANARY_MIN_REQUESTS": str(canary.min_requests),
                "CANARY_MAX_ERROR_PERCENT": str(canary.max_error_percent),
                "CANARY_MAX_ADDED_MS": str(canary.max_added_latency_ms),
            })
        # The host proxy (HAProxy) and its admin-socket client come from AL2023's own repository.
        packages = "docker jq aws-cfn-bootstrap" + (" haproxy socat" if activation == "slots" else "")
        user_data = ec2.UserData.for_linux()
        launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=ec2.InstanceType(instance_type),
            machine_image=machine_image,
            user_data=user_data,
            role=role,
            security_group=self.security_group,
            require_imdsv2=True,
            # No NAT gateway: hosts reach ECR, SSM and logs through their own public address; the
            # security group admits only the load balancer, and there is no SSH key.
            associate_public_ip_address=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(ROOT_VOLUME_GIB, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3),
                )
            ],
        )
        self.auto_scaling_group = autoscaling.AutoScalingGroup(
            self,
            "Hosts",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            launch_template=launch_template,
            min_capacity=desired_count,
            # Scaling: no DesiredCapacity in the template, so a deploy never resets what the autoscaler chose
            # (CloudFormation leaves an absent DesiredCapacity alone on update; raising MinSize still lifts it).
            desired_capacity=None if scale_on else desired_count,
            # Without scaling, one spare slot so a host can be replaced before its predecessor leaves.
            max_capacity=max_count if scale_on else desired_count + 1,
            # Fail over: EC2 status checks and the load balancer's; a host failing either is replaced.
            health_checks=autoscaling.HealthChecks.with_additional_checks(
                additional_types=[autoscaling.AdditionalHealthCheckType.ELB],
                grace_period=Duration.seconds(HEALTH_CHECK_GRACE_SECONDS),
            ),
            default_instance_warmup=Duration.seconds(HOST_WARMUP_SECONDS) if scale_on else None,
            signals=autoscaling.Signals.wait_for_all(timeout=BOOT_SIGNAL_TIMEOUT),
            update_policy=autoscaling.UpdatePolicy.rolling_update(
                max_batch_size=1, min_instances_in_service=desired_count
            ),
        )
        if scale_on is None:
            # Resetting the size on every deploy is the design here: desired_count in cdk.json is the fleet size.
            Annotations.of(self.auto_scaling_group).acknowledge_warning(
                "@aws-cdk/aws-autoscaling:desiredCapacitySet", "desired_count in cdk.json is the source of truth"
            )
        self.auto_scaling_group.attach_to_application_target_group(target_group)
        if scale_on is not None:
            self._track(scale_on)
        user_data.add_signal_on_exit_command(self.auto_scaling_group)
        user_data.add_commands(
            "set -euo pipefail",
            f"dnf install -y {packages}",
            f"aws s3 cp --region {region} --only-show-errors {host_files.s3_object_url} /tmp/liftoff-host.tgz",
            "tar -xzf /tmp/liftoff-host.tgz -C / && rm /tmp/liftoff-host.tgz",
            "install -d -m 0755 /etc/liftoff",
            "cat > /etc/liftoff/host.env <<'HOSTENV'",
            *[f"{key}={value}" for key, value in host_env.items()],
            "HOSTENV",
            "/opt/liftoff/bin/liftoff-boot",
        )
        rendered = len(user_data.render().encode())
        if rendered > USER_DATA_LIMIT_BYTES:
            raise ValueError(f"the hosts' user data is {rendered} bytes; EC2 takes at most {USER_DATA_LIMIT_BYTES} "
                             "(before base64): move what it carries into the host files asset")

        # Per host: a pull, the drain, the old container's stop, health waits for the new and, on failure,
        # the old version, and the canary (slots, unless its share is 0).
        canary_seconds = canary.seconds if canary is not None and canary.percent else 0
        per_host_seconds = (PULL_ALLOWANCE_SECONDS + drain_seconds + stop_timeout_seconds + HEALTH_TIMEOUT_SECONDS * 2
                            + READY_TIMEOUT_SECONDS + canary_seconds)
        self.gate_documents: dict[str, ssm.CfnDocument] = {}
        self.stage_association = self._gate(
            "Stage",
            description="liftoff update gate: pull a release image onto this host; nothing restarts",
            script="liftoff-stage",
            image_tag=staged_image_tag,
            per_host_seconds=PULL_ALLOWANCE_SECONDS,
        )
        self.activate_association = self._gate(
            "Activate",
            description="liftoff activation gate: restart this host's service on a release, drained and health-checked",
            script="liftoff-activate",
            image_tag=image_tag,
            per_host_seconds=per_host_seconds,
            max_concurrency=activate_concurrency,
        )
        self.activate_document = self.gate_documents["Activate"]
        # `liftoff migrate` runs a release's migrations once, on one host, through SSM Run Command with this
        # document (no association: nothing runs it by itself). Its inputs are patterned like the gates' tag.
        self.migrate_document = ssm.CfnDocument(
            self, "MigrateDocument", document_type="Command", update_method="NewVersion",
            content=migrate_document(timeout_seconds=PULL_ALLOWANCE_SECONDS + MIGRATE_SECONDS),
        )
        # The group's name (a Ref) already orders the gates after its hosts have signalled; when both gates
        # change in one update, the pull runs first.
        self.activate_association.node.add_dependency(self.stage_association)

        acknowledge(
            role, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
            "The AWS-maintained policy is the documented minimum for Session Manager access and State Manager associations.",
        )
        acknowledge(
            role.node.find_child("DefaultPolicy"), "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken, elasticloadbalancing:DescribeTargetHealth and the two autoscaling:Describe* "
            "actions support no resource-level permission.",
        )
        acknowledge(
            role.node.find_child("DefaultPolicy"),
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/"
            f"{self.host_report_path.strip('/')}/*]",
            "Each host writes its own report, named by its instance id, which is only known at launch: the "
            "wildcard is this stack's report path and nothing else.",
        )
        acknowledge(
            self.auto_scaling_group, "AwsSolutions-AS3",
            "Scaling events are visible in the group's activity history; no one subscribes to notifications at this stage.",
        )


    def _track(self, scale_on: ScaleOn) -> None:
        """Target tracking on the group. Scale-in is drained by the target group: the group deregisters a
        leaving host and waits out the deregistration delay before terminating it (no lifecycle hook; see
        docs/scaling.md). EC2 Auto Scaling scales in only after 15 minutes below the target, so it does not flap."""
        if scale_on.metric == "requests_per_target":
            self.scaling_policy = self.auto_scaling_group.scale_on_request_count(
                "ScaleOnRequests", target_requests_per_minute=scale_on.target)
            # CDK adds DependsOn the listener; the metric's ResourceLabel already Refs it (cfn-lint W3005).
            self.scaling_policy.node.default_child.add_deletion_override("DependsOn")
        else:
            self.scaling_policy = self.auto_scaling_group.scale_on_cpu_utilization(
                "ScaleOnCpu", target_utilization_percent=scale_on.target)

    def _gate(
        self, name: str, *, description: str, script: str, image_tag: str, per_host_seconds: int,
        max_concurrency: str = "1",
    ) -> ssm.CfnAssociation:
        """A Command document running `script TAG`, and the association that runs it on every host of
        the group whenever `image_tag` (a stack parameter) changes. The document is kept in `gate_documents`:
        `liftoff` runs the activate gate's on one host by itself (the fleet's canary)."""
        document = ssm.CfnDocument(
            self,
            f"{name}Document",
            document_type="Command",
            update_method="NewVersion",
            content=gate_document(description=description, script=script, timeout_seconds=per_host_seconds + 60),
        )
        self.gate_documents[name] = document
        return ssm.CfnAssociation(
            self,
            f"{name}Association",
            name=document.ref,
            parameters={"ImageTag": [image_tag]},
            targets=[
                ssm.CfnAssociation.TargetProperty(
                    key="tag:aws:autoscaling:groupName", values=[self.auto_scaling_group.auto_scaling_group_name]
                )
            ],
            # One host at a time, or a quarter of the fleet at a time once the fleet's canary host passed alone,
            # or all at once (a warm rollback is a flip on every host); stop at the first failure: hosts not yet
            # started keep the old version.
            max_concurrency=max_concurrency,
            max_errors="0",
            # CloudFormation waits for every host before it succeeds. The wait covers the largest fleet
            # config allows (plus the spare) rather than today's count: a timeout computed from
            # desired_count changed both associations on every scale deploy, and CloudFormation re-ran
            # both gates on every host. The wait is only a ceiling: each host's run has its own
            # timeout, and the first failure (max_errors 0) ends the association.
            wait_for_success_timeout_seconds=min(
                300 + per_host_seconds * (MAX_DESIRED_COUNT + 1), MAX_ASSOCIATION_WAIT_SECONDS
            ),
        )


@jsii.implements(ec2.IMachineImage)
class PinnedImage:
    """One AMI id for every region the stack deploys to: the engineer chose it, nothing moves it."""

    def __init__(self, ami_id: str) -> None:
        self.ami_id = ami_id

    def get_image(self, scope: Construct) -> ec2.MachineImageConfig:
        return ec2.MachineImageConfig(
            image_id=self.ami_id, os_type=ec2.OperatingSystemType.LINUX, user_data=ec2.UserData.for_linux()
        )
