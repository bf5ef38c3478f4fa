"""The emulator's ECS keeps what a template says, and an update moves the service to the new revision."""
import json

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from moto import mock_aws
from moto.cloudformation.models import Stack
from moto.kms import utils as kms_utils

from local import moto_models


def template(tag: str, *, desired: int = 2) -> str:
    container = {
        "Name": "app", "Image": {"Fn::Join": ["", ["registry/repo:", {"Ref": "Tag"}]]}, "User": "1000",
        "ReadonlyRootFilesystem": True, "StopTimeout": 10, "HealthCheck": {"Command": ["CMD", "true"], "Interval": 5},
        "LogConfiguration": {"LogDriver": "awslogs", "Options": {"awslogs-group": "logs", "awslogs-stream-prefix": "app"}},
        "Environment": [{"Name": "APP_VERSION", "Value": {"Ref": "Tag"}}], "PortMappings": [{"ContainerPort": 8080}],
        "Secrets": [{"Name": "DB_PASSWORD", "ValueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf:password::"}],
    }
    return json.dumps({
        "Parameters": {"Tag": {"Type": "String"}},
        "Resources": {
            "Cluster": {"Type": "AWS::ECS::Cluster"},
            "Task": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
                "Family": "service-task", "Cpu": "256", "Memory": "512", "NetworkMode": "awsvpc",
                "RequiresCompatibilities": ["FARGATE"], "ExecutionRoleArn": "arn:aws:iam::123456789012:role/execution",
                "TaskRoleArn": "arn:aws:iam::123456789012:role/task", "ContainerDefinitions": [container]}},
            "Service": {"Type": "AWS::ECS::Service", "Properties": {
                "Cluster": {"Ref": "Cluster"}, "TaskDefinition": {"Ref": "Task"}, "DesiredCount": desired,
                "LaunchType": "FARGATE", "HealthCheckGracePeriodSeconds": 15,
                "DeploymentConfiguration": {"Strategy": "BLUE_GREEN", "BakeTimeInMinutes": 5, "MaximumPercent": 200,
                                            "MinimumHealthyPercent": 100,
                                            "Alarms": {"AlarmNames": ["release-5xx"], "Enable": True, "Rollback": True}},
                "LoadBalancers": [{"ContainerName": "app", "ContainerPort": 8080, "TargetGroupArn": "arn:aws:elasticloadbalancing:tg"}]}},
        },
        "Outputs": {"Cluster": {"Value": {"Ref": "Cluster"}}, "Service": {"Value": {"Fn::GetAtt": ["Service", "Name"]}}},
    })


@pytest.fixture
def ecs_stack():
    moto_models.install()
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        ecs = boto3.client("ecs", region_name="us-east-1")
        cloudformation.create_stack(StackName="svc", TemplateBody=template("1.0.0"),
                                    Parameters=[{"ParameterKey": "Tag", "ParameterValue": "1.0.0"}])
        outputs = {o["OutputKey"]: o["OutputValue"] for o in cloudformation.describe_stacks(StackName="svc")["Stacks"][0]["Outputs"]}

        def service() -> dict:
            return ecs.describe_services(cluster=outputs["Cluster"], services=[outputs["Service"]])["services"][0]

        def update(tag: str, **kwargs) -> None:
            cloudformation.update_stack(StackName="svc", TemplateBody=template(tag, **kwargs),
                                        Parameters=[{"ParameterKey": "Tag", "ParameterValue": tag}])

        yield ecs, service, update


def test_the_task_definition_keeps_every_property_the_template_sets(ecs_stack):
    ecs, service, _ = ecs_stack
    definition = ecs.describe_task_definition(taskDefinition=service()["taskDefinition"])["taskDefinition"]
    assert (definition["networkMode"], definition["cpu"], definition["memory"]) == ("awsvpc", "256", "512")
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["executionRoleArn"].endswith(":role/execution") and definition["taskRoleArn"].endswith(":role/task")
    container = definition["containerDefinitions"][0]
    assert container["image"] == "registry/repo:1.0.0"
    assert (container["user"], container["readonlyRootFilesystem"], container["stopTimeout"]) == ("1000", True, 10)
    assert container["healthCheck"] == {"command": ["CMD", "true"], "interval": 5}
    # Option names are the user's (awslogs-...), not CloudFormation property names: kept as written.
    assert container["logConfiguration"]["options"] == {"awslogs-group": "logs", "awslogs-stream-prefix": "app"}
    assert container["secrets"][0]["valueFrom"].endswith(":password::")


def test_the_service_keeps_its_load_balancer_launch_type_and_deployment_configuration(ecs_stack):
    _, service, _ = ecs_stack
    described = service()
    assert described["launchType"] == "FARGATE"
    assert described["healthCheckGracePeriodSeconds"] == 15
    assert described["loadBalancers"] == [{"containerName": "app", "containerPort": 8080, "targetGroupArn": "arn:aws:elasticloadbalancing:tg"}]
    configuration = described["deploymentConfiguration"]
    assert (configuration["strategy"], configuration["bakeTimeInMinutes"]) == ("BLUE_GREEN", 5)
    assert configuration["alarms"] == {"alarmNames": ["release-5xx"], "enable": True, "rollback": True}


def test_an_image_tag_update_registers_a_revision_and_starts_a_deployment_of_it(ecs_stack):
    ecs, service, update = ecs_stack
    first = service()["taskDefinition"]
    update("2.0.0")
    described = service()
    assert described["taskDefinition"] != first and described["taskDefinition"].endswith(":2")
    definition = ecs.describe_task_definition(taskDefinition=described["taskDefinition"])["taskDefinition"]
    assert definition["containerDefinitions"][0]["image"] == "registry/repo:2.0.0"
    assert definition["networkMode"] == "awsvpc"
    assert [(d["status"], d["taskDefinition"]) for d in described["deployments"]] == [
        ("PRIMARY", described["taskDefinition"]), ("ACTIVE", first)]
    assert ecs.describe_task_definition(taskDefinition=first)["taskDefinition"]["status"] == "INACTIVE"


def test_a_count_change_alone_keeps_the_revision_and_starts_no_deployment(ecs_stack):
    _, service, update = ecs_stack
    before = service()
    update("1.0.0", desired=3)
    after = service()
    assert after["desiredCount"] == 3
    assert after["taskDefinition"] == before["taskDefinition"]
    assert [d["id"] for d in after["deployments"]] == [d["id"] for d in before["deployments"]]


def test_a_count_and_image_change_together_move_the_service_to_the_new_revision(ecs_stack):
    # The service's own JSON changes too: it must still be updated after its task definition is replaced.
    ecs, service, update = ecs_stack
    update("2.0.0", desired=3)
    described = service()
    assert described["desiredCount"] == 3 and described["taskDefinition"].endswith(":2")
    image = ecs.describe_task_definition(taskDefinition=described["taskDefinition"])["taskDefinition"]["containerDefinitions"][0]["image"]
    assert image == "registry/repo:2.0.0"


def test_a_json_template_is_read_as_json_and_a_yaml_one_still_as_yaml(monkeypatch):
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "on", "Count": 1.5}}}}
    yaml_text = "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n    Properties:\n      TopicName: !Ref Name\n"
    assert Stack.parse_template(yaml_text) == {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Ref": "Name"}}}}}

    def no_yaml(*_args, **_kwargs):
        raise AssertionError("a JSON template went to PyYAML")

    # JSON never reaches PyYAML's pure-Python loader (the cost this avoids): it would fail the parse here.
    monkeypatch.setattr(moto_models.yaml, "load", no_yaml)
    assert Stack.parse_template(json.dumps(template)) == template


def test_the_al2023_image_the_hosts_boot_exists_and_the_ecs_optimized_ones_are_not_made():
    moto_models.install()
    with mock_aws():
        ssm, ec2 = boto3.client("ssm", region_name="eu-west-1"), boto3.client("ec2", region_name="eu-west-1")
        for architecture in ("x86_64", "arm64"):
            image_id = ssm.get_parameter(
                Name=f"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{architecture}")["Parameter"]["Value"]
            [image] = ec2.describe_images(ImageIds=[image_id])["Images"]
            assert image["Architecture"] == architecture and image["Name"].startswith("al2023-ami-")
        owned_by_amazon = ec2.describe_images(Owners=["amazon"])["Images"]
        assert owned_by_amazon, "moto's default and latest AMIs are still there"
        assert not [image for image in owned_by_amazon if "ecs" in image["Name"].lower()]


def group_template(*, minimum: int, maximum: int, subnet: str = "SubnetA", desired: int | None = None) -> str:
    """A group launched from a launch template, as ours is (a rolling update policy, no DesiredCapacity with scaling)."""
    sizes = {"MinSize": str(minimum), "MaxSize": str(maximum), **({"DesiredCapacity": str(desired)} if desired else {})}
    return json.dumps({"Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
        **{name: {"Type": "AWS::EC2::Subnet", "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": cidr, "AvailabilityZone": zone}}
           for name, cidr, zone in (("SubnetA", "10.0.0.0/24", "us-east-1a"), ("SubnetB", "10.0.1.0/24", "us-east-1b"))},
        "Template": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}}},
        "Hosts": {"Type": "AWS::AutoScaling::AutoScalingGroup",
                  "UpdatePolicy": {"AutoScalingRollingUpdate": {"MaxBatchSize": 1, "MinInstancesInService": minimum}},
                  "Properties": {**sizes, "VPCZoneIdentifier": [{"Ref": subnet}],
                                 "LaunchTemplate": {"LaunchTemplateId": {"Ref": "Template"},
                                                    "Version": {"Fn::GetAtt": ["Template", "LatestVersionNumber"]}}}},
    }, "Outputs": {"Group": {"Value": {"Ref": "Hosts"}}}})


@pytest.fixture
def group_stack():
    moto_models.install()
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        autoscaling = boto3.client("autoscaling", region_name="us-east-1")
        cloudformation.create_stack(StackName="hosts", TemplateBody=group_template(minimum=2, maximum=5))

        def group() -> dict:
            (name,) = [o["OutputValue"] for o in cloudformation.describe_stacks(StackName="hosts")["Stacks"][0]["Outputs"]]
            (found,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
            return found

        def update(**kwargs) -> None:
            cloudformation.update_stack(StackName="hosts", TemplateBody=group_template(**kwargs))

        yield autoscaling, group, update


def instances(group: dict) -> set[str]:
    return {instance["InstanceId"] for instance in group["Instances"]}


def test_a_size_change_updates_the_group_in_place_and_keeps_a_desired_capacity_the_template_does_not_name(group_stack):
    autoscaling, group, update = group_stack
    before = group()
    autoscaling.set_desired_capacity(AutoScalingGroupName=before["AutoScalingGroupName"], DesiredCapacity=4)
    kept = instances(group())
    update(minimum=3, maximum=6)
    after = group()
    assert after["AutoScalingGroupName"] == before["AutoScalingGroupName"]
    assert (after["MinSize"], after["DesiredCapacity"], after["MaxSize"]) == (3, 4, 6)
    assert instances(after) == kept and len(kept) == 4


def test_a_raised_floor_lifts_the_desired_capacity_and_adds_instances_beside_the_running_ones(group_stack):
    _, group, update = group_stack
    kept = instances(group())
    update(minimum=3, maximum=5)
    after = group()
    assert after["DesiredCapacity"] == 3 and kept < instances(after) and len(instances(after)) == 3


def test_a_named_desired_capacity_is_set_by_the_update(group_stack):
    _, group, update = group_stack
    update(minimum=2, maximum=5, desired=3)
    assert group()["DesiredCapacity"] == 3


def test_moving_the_group_to_other_subnets_still_replaces_every_instance(group_stack):
    """What the instances launch from or into changed: the rolling update replaces each (moto: a new group)."""
    _, group, update = group_stack
    kept = instances(group())
    update(minimum=2, maximum=5, subnet="SubnetB")
    after = group()
    assert len(instances(after)) == 2 and not instances(after) & kept


def test_a_kms_keys_private_key_is_made_when_first_used_and_signs_and_verifies(monkeypatch):
    moto_models.install()
    made = []  # the RSA keys moto's KMS generates, by size
    generate = kms_utils.rsa.generate_private_key
    monkeypatch.setattr(kms_utils.rsa, "generate_private_key",
                        lambda public_exponent, key_size, **kwargs: made.append(key_size) or generate(public_exponent, key_size, **kwargs))
    with mock_aws():
        kms = boto3.client("kms", region_name="eu-west-1")
        symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
        ciphertext = kms.encrypt(KeyId=symmetric, Plaintext=b"secret")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"secret"
        signing = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        assert made == []  # neither key has made its private key yet
        signature = kms.sign(KeyId=signing, Message=b"release", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
        assert made == [2048]
        assert kms.verify(KeyId=signing, Message=b"release", Signature=signature,
                          SigningAlgorithm="RSASSA_PSS_SHA_256")["SignatureValid"]
        public = serialization.load_der_public_key(kms.get_public_key(KeyId=signing)["PublicKey"])
        assert public.key_size == 2048 and made == [2048]  # the same key, made once
