"""Acknowledge cdk-nag findings next to the resource they concern, each with its reason."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, reasons: Mapping[str, str]) -> None:
    """``reasons`` maps a rule id (``AwsSolutions-IAM5[Resource::*]``) to why it is acceptable."""
    Validations.of(construct).acknowledge(
        *(Acknowledgment(id=rule, reason=reason) for rule, reason in sorted(reasons.items()))
    )


def token_name(resource: IConstruct, attribute: str | None = None) -> str:
    """How cdk-nag prints a reference to ``resource`` (an L2 or its CfnResource) in a finding
    id: ``<LogicalId>`` or ``<LogicalId.Attr>``."""
    element = resource if isinstance(resource, CfnElement) else resource.node.default_child
    if not isinstance(element, CfnElement):
        raise TypeError(f"{resource.node.path} has no CloudFormation resource to reference")
    stack = Stack.of(element)
    logical_id = stack.resolve(stack.get_logical_id(element))
    return f"<{logical_id}.{attribute}>" if attribute else f"<{logical_id}>"
