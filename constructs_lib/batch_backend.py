"""AWS Batch rollout backend: a managed EC2 compute environment that scales to zero, a job queue
and the rollout job definition. One experiment's N rollouts are one array job on this queue."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.nag import acknowledge
from constructs_lib.network import RolloutNetwork
from constructs_lib.simapp_image import SimappImage

ROLLOUT_ENTRYPOINT = "/opt/rollouts/rollout-entrypoint.sh"
DEFAULT_ATTEMPT_HOURS = 24


class BatchRolloutBackend(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: RolloutNetwork,
        image: SimappImage,
        rollout_role: iam.IRole,
        instance_types: tuple[str, ...],
        spot: bool,
        max_vcpus: int,
        gpu: bool,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        # IMDSv2 only, hop limit 1: the ECS agent (host network) reaches instance metadata,
        # containers (one hop further) do not; they use their job role's credentials.
        launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            require_imdsv2=True,
            http_put_response_hop_limit=1,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        100, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3
                    ),
                )
            ],
        )
        optimal = instance_types == ("optimal",)
        self.compute_environment = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "ComputeEnvironment",
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=network.rollout_subnets.subnets),
            security_groups=[network.rollout_security_group],
            minv_cpus=0,  # nothing runs, nothing is paid
            maxv_cpus=max_vcpus,
            spot=spot,
            use_optimal_instance_classes=optimal,
            instance_types=[] if optimal else [ec2.InstanceType(t) for t in instance_types],
            launch_template=launch_template,
            images=[
                batch.EcsMachineImage(
                    image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA
                    if gpu
                    else batch.EcsMachineImageType.ECS_AL2023
                )
            ],
            update_to_latest_image_version=True,
        )
        self.job_queue = batch.JobQueue(
            self,
            "JobQueue",
            priority=1,
            compute_environments=[
                batch.OrderedComputeEnvironment(
                    compute_environment=self.compute_environment, order=1
                )
            ],
        )

        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        container = batch.EcsEc2ContainerDefinition(
            self,
            "Container",
            image=image.container_image,
            cpu=4,
            memory=Size.mebibytes(8192),
            gpu=1 if gpu else None,
            job_role=rollout_role,
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
            image.grant_pull(container.execution_role)
            acknowledge(
                container.execution_role,
                {
                    "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken has no resource-level permissions; image pulls "
                    "themselves are limited to the simapp repository."
                },
            )
        acknowledge(
            self.compute_environment,
            {
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonEC2ContainerServiceforEC2Role]": "The ECS agent on Batch instances needs this AWS-maintained instance policy; "
                "containers get their own job role and cannot reach instance metadata (IMDSv2, hop limit 1).",
            },
        )
