from __future__ import annotations

import json

from aws_cdk.assertions import Match


def test_repository_keeps_every_release(shipped):
    template = shipped.template("staging-registry")
    template.resource_count_is("AWS::ECR::Repository", 1)
    template.has_resource(
        "AWS::ECR::Repository",
        {
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "ImageTagMutability": "IMMUTABLE",
                    "ImageScanningConfiguration": {"ScanOnPush": True},
                }
            ),
        },
    )


def test_lifecycle_expires_only_untagged_images(shipped):
    repository = next(iter(shipped.template("staging-registry").find_resources("AWS::ECR::Repository").values()))
    policy = json.loads(repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])
    selections = [rule["selection"] for rule in policy["rules"]]
    assert selections, "an untagged-image rule is expected"
    # A rule that could select a tagged image would eventually delete a rollback target.
    assert all(selection["tagStatus"] == "untagged" for selection in selections)
    assert selections[0]["countType"] == "sinceImagePushed"


def test_registry_outputs(shipped):
    outputs = shipped.template("staging-registry").find_outputs("*")
    assert {"RepositoryUri", "RepositoryName"} <= set(outputs)


def test_production_shares_the_staging_registry(shipped):
    # One image, promoted: production deploys exactly the bytes staging ran.
    assert "production-registry" not in shipped.templates
    launch_template = next(iter(shipped.template("production-service").find_resources("AWS::EC2::LaunchTemplate").values()))
    assert "staging-registry:ExportsOutput" in json.dumps(launch_template["Properties"]["LaunchTemplateData"]["UserData"])
