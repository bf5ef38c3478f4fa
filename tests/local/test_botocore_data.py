"""The harness's processes read botocore's data once (local/botocore_data.py)."""
import subprocess
import sys

import boto3

from local import botocore_data
from tests.helpers.synth import REPO


def test_sessions_made_after_sharing_read_through_one_loader():
    botocore_data.share_one_loader()
    first, second = boto3.session.Session(region_name="us-east-1"), boto3.session.Session(region_name="eu-west-1")
    loader = first._session.get_component("data_loader")
    assert second._session.get_component("data_loader") is loader
    first.client("ssm")
    assert any(key[:2] == ("load_service_model", "ssm") for key in loader._cache), "the ssm model is kept for the next"


def test_the_emulator_shares_one_loader_from_before_moto_imports():
    # moto's modules make sessions as they import: the emulator's module shares the loader before it imports moto.
    probe = ("import local.moto_server, boto3, botocore.session\n"
             "loaders = {id(boto3.session.Session()._session.get_component('data_loader')) for _ in range(3)}\n"
             "print(len(loaders), botocore.session.create_loader.__module__)\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "local.botocore_data"], result.stdout
