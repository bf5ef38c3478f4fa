"""The adapter's two host-report calls (release/adapters/aws.py): every report under the path, across pages, by
instance id; an unreadable one marked; a re-drive is one StartAssociationsOnce."""
from __future__ import annotations

import json

import boto3
from botocore.stub import Stubber

from release.adapters.aws import Aws

PATH = "/liftoff/production-service/hosts/"


def test_every_report_is_read_across_pages_and_an_unreadable_one_is_marked(emulated_aws):
    ssm = boto3.client("ssm", region_name="us-east-1")
    for index in range(23):  # more than one page (GetParametersByPath returns at most 10)
        ssm.put_parameter(Name=f"{PATH}i-{index:04d}", Value=json.dumps({"instance": f"i-{index:04d}", "active": "1.0.0"}), Type="String")
    ssm.put_parameter(Name=f"{PATH}i-broken", Value="[1, 2]", Type="String")
    ssm.put_parameter(Name="/liftoff/other-service/hosts/i-else", Value="{}", Type="String")  # another stack's host
    reports = Aws(region="us-east-1").host_reports(PATH)
    assert len(reports) == 24 and reports["i-0022"] == {"instance": "i-0022", "active": "1.0.0"}
    assert reports["i-broken"] == {"instance": "i-broken", "error": f"unreadable report in {PATH}i-broken: a JSON list, not an object"}
    assert "i-else" not in reports
    assert Aws(region="us-east-1").host_reports(PATH.rstrip("/")) == reports  # the output's trailing slash is optional


def test_a_redrive_is_one_start_associations_once(emulated_aws):
    aws = Aws(region="us-east-1")
    with Stubber(aws.client("ssm")) as stub:  # moto has no association API
        stub.add_response("start_associations_once", {}, {"AssociationIds": ["a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"]})
        aws.start_association_once("a1b2c3d4-5678-90ab-cdef-EXAMPLE11111")
        stub.assert_no_pending_responses()
