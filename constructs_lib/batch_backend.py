"""AWS Batch rollout backend: a managed EC2 compute environment that scales to zero and a job
queue, shared by every experiment. Each experiment registers its own job definition
(``constructs_lib/rollout_job.py``); its N rollouts are one array job on this queue."""

from __future__ import annotations

from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from constructs_lib.nag import acknowledge
from constructs_lib.network import RolloutNetwork


class BatchRolloutBackend(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: RolloutNetwork,
        instance_types: tuple[str, ...],
        spot: bool,
        max_vcpus: int,
        gpu: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        # IMDSv2 only, hop limit 1. This does not keep rollout containers from the instance
        # role: Batch runs ECS-on-EC2 jobs in host network mode (AWS Batch user guide,
        # "Networking modes for AWS Batch jobs"), so a container is no hop further than the
        # agent. Closing that path is open work (README, "Security defaults").
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

        acknowledge(
            self.compute_environment,
            {
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonEC2ContainerServiceforEC2Role]": "The ECS agent on Batch instances needs this AWS-maintained instance policy; "
                "rollout containers run with their experiment's own job role.",
            },
        )
