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

from aws_cdk import CfnParameter, Fn, Stack
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
    "trainer-security-group",
    "rollout-subnets",
    "rollout-security-group",
    "assign-public-ip",
    "job-queue-arn",
    "simulation-application-arn",
)


def parameter_name(platform: str, key: str) -> str:
    return f"{PARAMETER_ROOT}/{platform}/{key}"


class PlatformParameters(Construct):
    """Writes the platform's values (``values`` must cover exactly ``PLATFORM_KEYS``)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, platform: str, values: Mapping[str, str]
    ) -> None:
        super().__init__(scope, construct_id)
        missing = sorted(set(PLATFORM_KEYS) ^ set(values))
        if missing:
            raise ValueError(f"platform parameters: keys do not match PLATFORM_KEYS: {missing}")
        for key in PLATFORM_KEYS:
            ssm.StringParameter(
                self,
                key,
                parameter_name=parameter_name(platform, key),
                string_value=values[key],
                description=f"DeepRacer Rollouts platform '{platform}': {key}",
            )


class PlatformReference:
    """The platform's values as deploy-time tokens inside an experiment stack.

    Each value becomes a CloudFormation parameter only when first used, so a stack carries no
    unused parameters (a batch experiment never reads the RoboMaker application, and so on).
    """

    def __init__(self, scope: Construct, *, platform: str) -> None:
        self._scope = scope
        self._platform = platform

    def _value(self, key: str) -> str:
        # A readable logical id ("PlatformBucketName") instead of CDK's hashed one keeps the
        # template, the console's parameter list and policy findings legible.
        logical_id = "Platform" + "".join(part.capitalize() for part in key.split("-"))
        return CfnParameter(
            Stack.of(self._scope),
            logical_id,
            type="AWS::SSM::Parameter::Value<String>",
            default=parameter_name(self._platform, key),
            description=f"SSM parameter holding the platform's {key}",
        ).value_as_string

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
        return Fn.split(",", self._value("trainer-subnets"))

    @cached_property
    def trainer_security_group(self) -> str:
        return self._value("trainer-security-group")

    @cached_property
    def rollout_subnets(self) -> list[str]:
        return Fn.split(",", self._value("rollout-subnets"))

    @cached_property
    def rollout_security_group(self) -> str:
        return self._value("rollout-security-group")

    @cached_property
    def assign_public_ip(self) -> str:
        return self._value("assign-public-ip")

    @cached_property
    def job_queue_arn(self) -> str:
        return self._value("job-queue-arn")

    @cached_property
    def simulation_application_arn(self) -> str:
        return self._value("simulation-application-arn")
