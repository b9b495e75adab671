"""One experiment's rollout compute on Batch: a Fargate compute environment, its queue and the
job definition its N rollouts (one array job) run with.

Why Fargate, per experiment:
- Batch compute environments fix their security groups, and the experiment's trainer admits Redis
  only from the experiment's own rollout group (``experiment_network.py``), so each experiment
  needs a compute environment of its own. Fargate ones have no instances: nothing runs, nothing
  is paid, and they are ready at once.
- Batch runs ECS-on-EC2 jobs in host network mode (AWS Batch user guide, "Networking modes for
  AWS Batch jobs"), so a container on EC2 reaches the instance metadata service, and with it the
  instance role, as the ECS agent does; IMDSv2's hop limit does not help in the host namespace.
  A Fargate task runs in its own isolated environment (Amazon ECS best practices guide, "Fargate
  security considerations"), in awsvpc mode with its own network interface; it is offered the
  task metadata endpoint only (Amazon ECS developer guide, "Amazon ECS task metadata available
  for tasks on Fargate"), and its only credentials are the job role's. There is no instance
  profile to reach.
Trade-off (README, "Rollout compute"): Fargate pulls the image for every task (no layer cache
on a warm host: a few minutes more per start for the multi-GB simapp image), bills per vCPU-hour
and GB-hour at a higher rate than a packed c5/c6i host, has no GPUs, and sizes tasks in fixed
steps (``rollouts/fargate.py``); Fargate Spot has the same interruptions as EC2 Spot.
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
# The task holds the extracted simapp image (several GB compressed, far more on disk) plus the
# simulation's logs and video chunks; Fargate's default of 20 GiB is too tight for that.
EPHEMERAL_STORAGE_GIB = 60
# Batch's statusReason for a reclaimed capacity: Fargate Spot's task stop reason ("Your Spot
# Task was interrupted.", Amazon ECS developer guide, "Fargate Spot termination notices") and,
# for jobs that still reach EC2, Batch's own "Host EC2 (instance ...) terminated.".
RECLAIM_REASONS = ("Your Spot Task was interrupted*", "Host EC2*")
RETRY_ATTEMPTS = 5


class FargateRolloutCompute(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image_uri: str,
        image_repository_arn: str,
        job_role: iam.IRole,
        subnet_ids: list[str],
        security_group_ids: list[str],
        max_vcpus: int,
        spot: bool,
        assign_public_ip: bool,
        log_retention: logs.RetentionDays,
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.compute_environment = batch.CfnComputeEnvironment(
            self,
            "ComputeEnvironment",
            type="MANAGED",
            state="ENABLED",
            compute_resources=batch.CfnComputeEnvironment.ComputeResourcesProperty(
                type="FARGATE_SPOT" if spot else "FARGATE",
                # Exactly the experiment's N rollouts: a runaway submit cannot grow past them.
                maxv_cpus=max_vcpus,
                subnets=subnet_ids,
                security_group_ids=security_group_ids,
            ),
        )
        self.job_queue = batch.CfnJobQueue(
            self,
            "JobQueue",
            priority=1,
            state="ENABLED",
            compute_environment_order=[
                batch.CfnJobQueue.ComputeEnvironmentOrderProperty(
                    compute_environment=self.compute_environment.attr_compute_environment_arn,
                    order=1,
                )
            ],
        )
        self.log_group = encrypted_log_group(self, "Logs", retention=log_retention, key=log_key)
        container = batch.EcsFargateContainerDefinition(
            self,
            "Container",
            image=ecs.ContainerImage.from_registry(image_uri),
            cpu=4,  # each SubmitJob overrides vCPUs and memory with the experiment's
            memory=Size.mebibytes(8192),
            assign_public_ip=assign_public_ip,
            ephemeral_storage_size=Size.gibibytes(EPHEMERAL_STORAGE_GIB),
            # Fargate Spot runs X86_64 Linux tasks only (Amazon ECS developer guide, "AWS
            # Fargate capacity providers"); the simapp images are x86_64 too.
            fargate_cpu_architecture=ecs.CpuArchitecture.X86_64,
            fargate_operating_system_family=ecs.OperatingSystemFamily.LINUX,
            fargate_platform_version=ecs.FargatePlatformVersion.LATEST,
            job_role=job_role,
            command=[ROLLOUT_ENTRYPOINT],
            logging=ecs.LogDriver.aws_logs(stream_prefix="rollout", log_group=self.log_group),
            readonly_root_filesystem=False,
            # An init process as PID 1 passes the SIGTERM of CancelJob/TerminateJob (and of a
            # Fargate Spot interruption) on to the entrypoint (bash as PID 1 would ignore it,
            # so workers died only at SIGKILL), as deepracer-for-cloud runs its rollout
            # containers (docker-compose-training.yml, init: true).
            linux_parameters=batch.LinuxParameters(
                self, "LinuxParameters", init_process_enabled=True
            ),
        )
        self.job_definition = batch.EcsJobDefinition(
            self,
            "JobDefinition",
            container=container,
            timeout=Duration.hours(DEFAULT_ATTEMPT_HOURS),
            retry_attempts=RETRY_ATTEMPTS,
            # A reclaimed rollout is retried with the same AWS_BATCH_JOB_ARRAY_INDEX, so it
            # rejoins its trainer as the same worker (simapp/rollout-entrypoint.sh); a rollout
            # that fails by itself (a crashing simulation, a bad reward function) is not.
            retry_strategies=[
                *(
                    batch.RetryStrategy.of(
                        batch.Action.RETRY, batch.Reason.custom(on_status_reason=r)
                    )
                    for r in RECLAIM_REASONS
                ),
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

    @property
    def job_queue_arn(self) -> str:
        return self.job_queue.attr_job_queue_arn
