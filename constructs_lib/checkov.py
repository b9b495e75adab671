"""checkov findings that do not apply here, recorded next to the resource they concern
(``Metadata.checkov.skip``, each with its reason), the way ``nag.py`` records cdk-nag's.

The Lambda reasons hold for every function these stacks contain: the fan-out's two handlers and
the functions the CDK Provider framework adds (and the platform's default-security-group
custom resource).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import CfnResource
from constructs import IConstruct

LAMBDA_REASONS = {
    "CKV_AWS_115": "Runs a few times per stack operation; a reserved concurrency would only take "
    "capacity from the account's pool.",
    "CKV_AWS_116": "Invoked by CloudFormation and the Provider framework, which report every "
    "failure to CloudFormation; a dead-letter queue would hold events nobody replays.",
    "CKV_AWS_117": "Calls only AWS APIs and has no inbound path; running it in the VPC would add "
    "NAT or endpoint dependencies without reducing exposure.",
    "CKV_AWS_173": "The environment holds names and ARNs, no secrets; Lambda encrypts it at rest "
    "with an AWS managed key.",
}


def skip(construct: IConstruct, reasons: Mapping[str, str]) -> None:
    """Record that the checkov checks ``reasons`` names (id -> why) do not apply here."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource")
    existing = resource.get_metadata("checkov") or {}
    skips = {entry["id"]: entry["comment"] for entry in existing.get("skip", [])}
    skips.update(reasons)
    resource.add_metadata(
        "checkov", {"skip": [{"id": k, "comment": v} for k, v in sorted(skips.items())]}
    )


def skip_lambda_findings(scope: IConstruct) -> None:
    """LAMBDA_REASONS on every Lambda function under ``scope`` (the plain CfnResource that
    CustomResourceProvider creates included). Called where functions are made, not as an app-wide
    aspect: visiting every construct of the app cost more than a second per synthesis."""
    for node in scope.node.find_all():
        if isinstance(node, CfnResource) and node.cfn_resource_type == "AWS::Lambda::Function":
            skip(node, LAMBDA_REASONS)
