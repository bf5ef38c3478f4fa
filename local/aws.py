"""The boto3 calls the emulated flow needs besides CloudFormation's own: out-of-band secrets, images, reads.

Every function takes a boto3 Session so the same code serves the in-process emulator (`mock_aws`)
and a `moto_server` reached through AWS_ENDPOINT_URL.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import string
import threading
from pathlib import Path
from typing import Iterable, Mapping

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from local.assembly import BOOTSTRAP_VERSION_SSM_NAME

# The fake identity every emulator run uses; moto accepts any credentials.
FAKE_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# moto's default account id; the CDK CLI bootstraps it as the current account.
EMULATED_ACCOUNT = "123456789012"
BOOTSTRAP_VERSION = "30"


class ReusedClients:
    """A boto3 Session look-alike that makes each client once (per service and settings) and hands out that one again.

    The harness asks for a client per call (a stand-in's every pass, every helper), thousands a run, and each costs
    a few ms of CPU to make (a class built from the service model, the endpoint rules parsed). boto3's clients may be
    shared between threads; its sessions may not, so clients are made under a lock."""

    def __init__(self, session: boto3.Session, **defaults):
        self._session, self._defaults = session, defaults
        self._clients: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    @property
    def region_name(self) -> str:
        return self._session.region_name

    def client(self, service_name: str, **kwargs):
        settings = {**self._defaults, **kwargs}
        key = (service_name, repr(sorted((name, vars(value) if isinstance(value, Config) else value)
                                         for name, value in settings.items())))
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._session.client(service_name, **settings)
            return self._clients[key]


class EndpointSession(ReusedClients):
    """A boto3 Session look-alike whose every client goes to one endpoint (the emulator), whatever the
    environment says: AWS_ENDPOINT_URL may be unset, and nothing may reach a real account."""

    def __init__(self, session: boto3.Session, endpoint_url: str):
        super().__init__(session, endpoint_url=endpoint_url)
        self.endpoint_url = endpoint_url


def fake_session() -> boto3.Session:
    """A session with the fake identity and region, reading no credentials or config from the environment."""
    return boto3.Session(
        aws_access_key_id=FAKE_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_ENVIRONMENT["AWS_SESSION_TOKEN"],
        region_name=FAKE_ENVIRONMENT["AWS_REGION"],
    )


def create_secrets(session: boto3.Session, to_create: Mapping[tuple[str, str], dict]) -> dict[tuple[str, str], str]:
    """Create (or find, on a later deploy) each secret a template would have generated; return their ARNs."""
    client = session.client("secretsmanager")
    arns = {}
    for (stack, logical_id), properties in to_create.items():
        name = f"{stack}/{logical_id}"
        try:
            arns[(stack, logical_id)] = client.describe_secret(SecretId=name)["ARN"]
            continue
        except client.exceptions.ResourceNotFoundException:
            pass
        arns[(stack, logical_id)] = client.create_secret(
            Name=name,
            Description=f"liftoff emulator: stands in for {stack}/{logical_id}",
            SecretString=_generated_secret_string(properties.get("GenerateSecretString", {})),
        )["ARN"]
    return arns


def create_alarms(session: boto3.Session, to_create: Mapping[str, dict]) -> list[str]:
    """Create (or redefine, on a later deploy) each alarm a template would have made; return their names."""
    client = session.client("cloudwatch")
    for arguments in to_create.values():
        client.put_metric_alarm(**arguments)
    return list(to_create)


def _generated_secret_string(generate: dict) -> str:
    """What CloudFormation's GenerateSecretString produces: the template JSON plus a random password."""
    excluded = set(generate.get("ExcludeCharacters", ""))
    alphabet = [c for c in string.ascii_letters + string.digits + string.punctuation if c not in excluded]
    password = "".join(secrets.choice(alphabet) for _ in range(generate.get("PasswordLength", 32)))
    if "SecretStringTemplate" not in generate:
        return password
    value = json.loads(generate["SecretStringTemplate"])
    value[generate.get("GenerateStringKey", "password")] = password
    return json.dumps(value)


def mark_bootstrapped(session: boto3.Session) -> None:
    """What `cdk bootstrap` leaves that the templates read: the SSM parameter behind BootstrapVersion."""
    session.client("ssm").put_parameter(Name=BOOTSTRAP_VERSION_SSM_NAME, Value=BOOTSTRAP_VERSION, Type="String", Overwrite=True)


def publish_file_assets(session: boto3.Session, assembly: Path, stack_names: Iterable[str]) -> list[str]:
    """What `cdk deploy` publishes before it deploys, for a deploy that skips the CLI: each stack's file assets (the
    host files the hosts' user data copies down) into the bootstrap bucket, which is made if missing. Returns the
    s3:// URLs written."""
    account = session.client("sts").get_caller_identity()["Account"]
    s3, written = session.client("s3"), []
    for stack in stack_names:
        manifest = json.loads((assembly / f"{stack}.assets.json").read_text())
        for asset in manifest.get("files", {}).values():
            source = asset["source"]
            if source.get("packaging", "file") != "file" or source["path"].endswith(".template.json"):
                continue  # the templates themselves go to CloudFormation directly
            for destination in asset["destinations"].values():
                bucket = destination["bucketName"].replace("${AWS::AccountId}", account).replace(
                    "${AWS::Region}", session.region_name).replace("${AWS::Partition}", "aws")
                try:
                    s3.head_bucket(Bucket=bucket)
                except ClientError:
                    where = {} if session.region_name == "us-east-1" else {
                        "CreateBucketConfiguration": {"LocationConstraint": session.region_name}}
                    s3.create_bucket(Bucket=bucket, **where)
                s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=(assembly / source["path"]).read_bytes())
                written.append(f"s3://{bucket}/{destination['objectKey']}")
    return written


# moto keeps manifests but no blobs (it has no GetDownloadUrlForLayer); the emulator keeps each image's config
# blob here, where `local.runtime.EmulatedRuntime.download_layer` reads it (docs/local-emulator.md).
LAYER_BUCKET = "liftoff-emulated-ecr-layers"


def put_config_blob(session: boto3.Session, repository_name: str, labels: Mapping[str, str]) -> str:
    """Store an image config blob with these labels; return its digest (what a manifest's config names)."""
    blob = json.dumps({"architecture": "arm64", "os": "linux", "config": {"Labels": dict(labels)}}, sort_keys=True).encode()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    s3 = session.client("s3")
    try:
        s3.head_bucket(Bucket=LAYER_BUCKET)
    except s3.exceptions.ClientError:
        s3.create_bucket(Bucket=LAYER_BUCKET)
    s3.put_object(Bucket=LAYER_BUCKET, Key=f"{repository_name}/{digest}", Body=blob)
    return digest


def push_images(session: boto3.Session, repository_name: str, tags: list[str] | tuple[str, ...],
                labels: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """Put one small image manifest per tag and start its scan; return the digests (one per tag, all distinct).

    moto derives an image's digest from its layers, so each tag gets its own small layer: with none,
    every tag would name the same image (and the repository's tags are immutable). On AWS the
    repository's scan-on-push starts a scan on every push; moto ignores scan-on-push, and the release
    tool refuses an image without a completed scan, so the scan is started here, as AWS would.
    `labels` (per tag) gives an image a config blob with those labels (`put_config_blob`).
    """
    client = session.client("ecr")
    digests = []
    for tag in tags:
        config_digest = "sha256:" + hashlib.sha256(f"liftoff config {tag}".encode()).hexdigest()
        if labels and tag in labels:  # an image that declares labels (its schema contract) has a real config blob
            config_digest = put_config_blob(session, repository_name, labels[tag])
        layer_digest = "sha256:" + hashlib.sha256(f"liftoff layer {tag}".encode()).hexdigest()
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32, "digest": layer_digest}],
        })
        image = client.put_image(repositoryName=repository_name, imageManifest=manifest, imageTag=tag)["image"]
        client.start_image_scan(repositoryName=repository_name, imageId={"imageTag": tag})
        digests.append(image["imageId"]["imageDigest"])
    return digests


def image_tags(session: boto3.Session, repository_name: str) -> list[str]:
    images = session.client("ecr").describe_images(repositoryName=repository_name)["imageDetails"]
    return sorted(tag for image in images for tag in image.get("imageTags", []))


def stack_outputs(session: boto3.Session, stack_name: str) -> dict[str, str]:
    stack = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def stack_parameters(session: boto3.Session, stack_name: str) -> dict[str, str]:
    stack = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    return {parameter["ParameterKey"]: parameter["ParameterValue"] for parameter in stack.get("Parameters", [])}


def stack_status(session: boto3.Session, stack_name: str) -> str:
    return session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
