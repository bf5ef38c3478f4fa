"""The stage's HTTPS identity: its certificate and, when it has a name, the DNS records for it.

With `domain_name` and its Route 53 zone, liftoff requests the ACM certificate (validated through a
record CloudFormation adds to the zone) and points an alias record at the load balancer. With only
`certificate_arn`, the certificate was made elsewhere and so is the name.
"""
from __future__ import annotations

from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as targets
from constructs import Construct


class Domain(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain_name: str | None,
        hosted_zone_id: str | None,
        hosted_zone_name: str | None,
        certificate_arn: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.domain_name = domain_name
        self.zone: route53.IHostedZone | None = None
        if domain_name is not None:
            if hosted_zone_id is None or hosted_zone_name is None:
                raise ValueError(f"domain_name {domain_name!r} needs hosted_zone_id and hosted_zone_name")
            self.zone = route53.HostedZone.from_hosted_zone_attributes(
                self, "Zone", hosted_zone_id=hosted_zone_id, zone_name=hosted_zone_name
            )
        if certificate_arn is not None:
            self.certificate: acm.ICertificate = acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn)
        elif self.zone is not None:
            self.certificate = acm.Certificate(
                self, "Certificate", domain_name=domain_name, validation=acm.CertificateValidation.from_dns(self.zone)
            )
        else:
            raise ValueError("a Domain needs domain_name with its hosted zone, or certificate_arn")

    def point_at(self, load_balancer: elbv2.IApplicationLoadBalancer) -> None:
        """The alias record for the name (IPv4: the load balancer has no IPv6 address)."""
        if self.zone is None:
            return
        route53.ARecord(
            self, "Alias",
            zone=self.zone,
            record_name=f"{self.domain_name}.",
            target=route53.RecordTarget.from_alias(targets.LoadBalancerTarget(load_balancer)),
        )
