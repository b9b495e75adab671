"""The Batch job definition of one experiment's rollouts, with that experiment's job role.

The platform keeps the compute environment and the queue (shared, idle at zero vCPUs); each
experiment registers its own job definition so that its rollouts run with its own role and log
to its own log group.
"""

from __future__ import annotations

from aws_cdk import Duration, Size
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.job_roles import grant_image_pull
from constructs_lib.nag import acknowledge
from constructs_lib.retention import encrypted_log_group

ROLLOUT_ENTRYPOINT = "/opt/rollouts/rollout-entrypoint.sh"
DEFAULT_ATTEMPT_HOURS = 24


class RolloutJobDefinition(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image_uri: str,
        image_repository_arn: str,
        job_role: iam.IRole,
        gpu: bool,
        log_retention: logs.RetentionDays,
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = encrypted_log_group(self, "Logs", retention=log_retention, key=log_key)
        container = batch.EcsEc2ContainerDefinition(
            self,
            "Container",
            image=ecs.ContainerImage.from_registry(image_uri),
            cpu=4,
            memory=Size.mebibytes(8192),
            gpu=1 if gpu else None,
            job_role=job_role,
            command=[ROLLOUT_ENTRYPOINT],
            logging=ecs.LogDriver.aws_logs(stream_prefix="rollout", log_group=self.log_group),
            readonly_root_filesystem=False,
            # An init process as PID 1 passes the SIGTERM of CancelJob/TerminateJob on to the
            # entrypoint (bash as PID 1 would ignore it, so workers died only at SIGKILL), as
            # deepracer-for-cloud runs its rollout containers (docker-compose-training.yml,
            # init: true).
            linux_parameters=batch.LinuxParameters(
                self, "LinuxParameters", init_process_enabled=True
            ),
        )
        self.job_definition = batch.EcsJobDefinition(
            self,
            "JobDefinition",
            container=container,
            timeout=Duration.hours(DEFAULT_ATTEMPT_HOURS),
            retry_attempts=2,
            retry_strategies=[
                # Spot reclaims are worth a retry; a crashing simulation is not.
                batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.SPOT_INSTANCE_RECLAIMED),
                batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")),
            ],
            propagate_tags=True,
        )
        if container.execution_role is not None:
            grant_image_pull(container.execution_role, image_repository_arn)
            acknowledge(
                container.execution_role,
                {
                    "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken has no "
                    "resource-level permissions; image pulls themselves are limited to the simapp "
                    "repository."
                },
            )

    @property
    def job_definition_arn(self) -> str:
        return self.job_definition.job_definition_arn
