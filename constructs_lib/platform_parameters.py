"""How experiment stacks find the platform: SSM parameters, not CloudFormation exports.

Exports would lock the platform: while any experiment imports a value, the platform could not
change or replace it (for example a new job definition revision or image). SSM parameters are
read by each experiment stack at deploy time (CloudFormation ``AWS::SSM::Parameter::Value``
parameters): no synth-time lookup, no account needed to synthesize, and the platform can evolve
while experiments run; an experiment picks up new values on its next deploy.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

from aws_cdk import CfnParameter, Stack
from aws_cdk import aws_ssm as ssm
from constructs import Construct

PARAMETER_ROOT = "/deepracer-rollouts"

# Every value an experiment needs from the platform; the order is the synthesized order.
PLATFORM_KEYS = (
    "backend",
    "bucket-name",
    "key-arn",
    "image-uri",
    "image-repository-arn",
    "vpc-id",
    "trainer-subnets",
    "rollout-subnets",
    "rollout-egress-security-group",
    "assign-public-ip",
    "simulation-application-arn",
)


# Subnet lists are StringList parameters, read as List<AWS::EC2::Subnet::Id>: CloudFormation
# checks each id, and a Batch compute environment takes the list as it is.
LIST_KEYS = ("trainer-subnets", "rollout-subnets")


def parameter_name(platform: str, key: str) -> str:
    return f"{PARAMETER_ROOT}/{platform}/{key}"


class PlatformParameters(Construct):
    """Writes the platform's values (``values`` must cover exactly ``PLATFORM_KEYS``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platform: str,
        values: Mapping[str, str | list[str]],
    ) -> None:
        super().__init__(scope, construct_id)
        missing = sorted(set(PLATFORM_KEYS) ^ set(values))
        if missing:
            raise ValueError(f"platform parameters: keys do not match PLATFORM_KEYS: {missing}")
        for key in PLATFORM_KEYS:
            value = values[key]
            name = parameter_name(platform, key)
            description = f"DeepRacer Rollouts platform '{platform}': {key}"
            if key in LIST_KEYS:
                if not isinstance(value, list):
                    raise ValueError(f"platform parameters: {key} must be a list")
                ssm.StringListParameter(
                    self,
                    key,
                    parameter_name=name,
                    string_list_value=value,
                    description=description,
                )
            else:
                if not isinstance(value, str):
                    raise ValueError(f"platform parameters: {key} must be a string")
                ssm.StringParameter(
                    self, key, parameter_name=name, string_value=value, description=description
                )


class PlatformReference:
    """The platform's values as deploy-time tokens inside an experiment stack.

    Each value becomes a CloudFormation parameter only when first used, so a stack carries no
    unused parameters (a batch experiment never reads the RoboMaker application, and so on).
    """

    def __init__(self, scope: Construct, *, platform: str) -> None:
        self._scope = scope
        self._platform = platform

    def _parameter(self, key: str, value_type: str) -> CfnParameter:
        # A readable logical id ("PlatformBucketName") instead of CDK's hashed one keeps the
        # template, the console's parameter list and policy findings legible.
        logical_id = "Platform" + "".join(part.capitalize() for part in key.split("-"))
        return CfnParameter(
            Stack.of(self._scope),
            logical_id,
            type=f"AWS::SSM::Parameter::Value<{value_type}>",
            default=parameter_name(self._platform, key),
            description=f"SSM parameter holding the platform's {key}",
        )

    def _value(self, key: str) -> str:
        return self._parameter(key, "String").value_as_string

    def _subnets(self, key: str) -> list[str]:
        return self._parameter(key, "List<AWS::EC2::Subnet::Id>").value_as_list

    @cached_property
    def bucket_name(self) -> str:
        return self._value("bucket-name")

    @cached_property
    def key_arn(self) -> str:
        return self._value("key-arn")

    @cached_property
    def image_uri(self) -> str:
        return self._value("image-uri")

    @cached_property
    def image_repository_arn(self) -> str:
        return self._value("image-repository-arn")

    @cached_property
    def vpc_id(self) -> str:
        return self._value("vpc-id")

    @cached_property
    def trainer_subnets(self) -> list[str]:
        return self._subnets("trainer-subnets")

    @cached_property
    def rollout_subnets(self) -> list[str]:
        return self._subnets("rollout-subnets")

    @cached_property
    def rollout_egress_security_group(self) -> str:
        return self._value("rollout-egress-security-group")

    @cached_property
    def assign_public_ip(self) -> str:
        return self._value("assign-public-ip")

    @cached_property
    def simulation_application_arn(self) -> str:
        return self._value("simulation-application-arn")
