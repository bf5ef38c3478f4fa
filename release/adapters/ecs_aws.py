"""The thin boto3 adapter for ECS's own deployments (ListServiceDeployments, DescribeServiceDeployments,
DescribeServiceRevisions, StopServiceDeployment): AWS's answers in, release/pure/ecs_deployments.py's plain data out."""
from __future__ import annotations

from typing import Any

from release.pure.ecs_deployments import ACTIVE_STATUSES, Revision, ServiceDeployment, image_tag


def read_deployments(ecs_client: Any, cluster: str, service: str) -> list[ServiceDeployment]:
    """The service's deployments ECS is still working on, with each revision's image tag and running tasks."""
    arns = [summary["serviceDeploymentArn"] for summary in ecs_client.list_service_deployments(
        cluster=cluster, service=service, status=list(ACTIVE_STATUSES)).get("serviceDeployments", [])]
    if not arns:
        return []
    described = ecs_client.describe_service_deployments(serviceDeploymentArns=arns).get("serviceDeployments", [])
    revision_arns = {summary["arn"] for deployment in described
                     for summary in [deployment.get("targetServiceRevision", {}), *deployment.get("sourceServiceRevisions", [])]
                     if summary.get("arn")}
    tags = {}
    if revision_arns:
        for revision in ecs_client.describe_service_revisions(serviceRevisionArns=sorted(revision_arns)).get("serviceRevisions", []):
            images = revision.get("containerImages", [])
            tags[revision["serviceRevisionArn"]] = next((image_tag(i.get("image", "")) for i in images if i.get("containerName") == "app"),
                                                        image_tag(images[0].get("image", "")) if images else "")

    def revision(summary: dict) -> Revision:
        return Revision(tag=tags.get(summary.get("arn", ""), ""), running=int(summary.get("runningTaskCount", 0)),
                        production_weight=summary.get("requestedProductionTrafficWeight"))

    return [
        ServiceDeployment(
            arn=deployment["serviceDeploymentArn"], status=deployment.get("status", ""),
            lifecycle_stage=deployment.get("lifecycleStage", ""),
            target=revision(deployment.get("targetServiceRevision", {})),
            sources=tuple(revision(source) for source in deployment.get("sourceServiceRevisions", [])),
            bake_minutes=deployment.get("deploymentConfiguration", {}).get("bakeTimeInMinutes"),
            updated_at=deployment.get("updatedAt"),
        )
        for deployment in described
    ]


def stop_with_rollback(ecs_client: Any, arn: str) -> None:
    ecs_client.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")


def deployment_status(ecs_client: Any, arn: str) -> str:
    described = ecs_client.describe_service_deployments(serviceDeploymentArns=[arn]).get("serviceDeployments", [])
    return described[0].get("status", "") if described else ""
