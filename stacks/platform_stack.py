"""PlatformStack: provisioned once per account and region, shared by every experiment."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Fn, Stack
from constructs import Construct

from constructs_lib.network import RolloutNetwork
from constructs_lib.platform_parameters import PARAMETER_ROOT, PlatformParameters
from constructs_lib.retention import log_retention
from constructs_lib.robomaker_backend import RoboMakerRolloutBackend
from constructs_lib.run_supervisor import RunSupervisor
from constructs_lib.simapp_image import SimappImage
from constructs_lib.storage import ExperimentDataStore
from rollouts.platform import PlatformConfig

NOT_USED = "none"


class PlatformStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        platform_name: str,
        **kwargs: Any,
    ) -> None:
        self._az_count = config.az_count
        super().__init__(scope, construct_id, **kwargs)
        retention = log_retention(config.log_retention_days)
        data = ExperimentDataStore(self, "Data")
        network = RolloutNetwork(
            self,
            "Network",
            az_count=config.az_count,
            egress=config.egress,
            log_retention=retention,
            log_key=data.key,
        )
        # Everything an experiment's code runs with belongs to that experiment (its reward
        # function runs in its rollouts): job roles, security groups and, on Batch, its Fargate
        # compute environment, queue and job definition (constructs_lib/job_roles.py,
        # experiment_network.py, rollout_compute.py). The platform keeps what is shared.
        image = SimappImage(self, "Simapp", base_image=config.simapp_image)

        simulation_application_arn = NOT_USED
        if config.backend == "robomaker":
            robomaker = RoboMakerRolloutBackend(
                self,
                "RoboMaker",
                bucket=data.bucket,
                image=image,
                app_form=config.robomaker_app_form,
            )
            simulation_application_arn = robomaker.application_arn

        # Owns every run from its start to its last job, whatever the experiment stacks do.
        supervisor = RunSupervisor(
            self,
            "Supervisor",
            platform_name=platform_name,
            bucket=data.bucket,
            key=data.key,
            notify_email=config.notify_email,
            log_retention=retention,
        )

        PlatformParameters(
            self,
            "Parameters",
            platform=platform_name,
            values={
                "backend": config.backend,
                "bucket-name": data.bucket.bucket_name,
                "key-arn": data.key.key_arn,
                "image-uri": image.image_uri,
                "image-repository-arn": image.repository_arn,
                "vpc-id": network.vpc.vpc_id,
                "trainer-subnets": network.trainer_subnets.subnet_ids,
                "rollout-subnets": network.rollout_subnets.subnet_ids,
                "rollout-egress-security-group": (
                    network.rollout_egress_security_group.security_group_id
                ),
                "assign-public-ip": str(network.assign_public_ip).lower(),
                "simulation-application-arn": simulation_application_arn,
            },
        )
        CfnOutput(
            self,
            "DataBucket",
            value=data.bucket.bucket_name,
            description="Experiment data (retained when stacks are deleted)",
        )
        CfnOutput(self, "Backend", value=config.backend)
        CfnOutput(
            self,
            "RunsTopic",
            value=supervisor.topic.topic_arn,
            description="One message per run outcome and per supervisor action (subscribe here)",
        )
        CfnOutput(
            self,
            "ParameterPath",
            value=f"{PARAMETER_ROOT}/{platform_name}/",
            description="SSM parameters that experiment stacks read at deploy time",
        )

    @property
    def availability_zones(self) -> list[str]:
        # Environment-agnostic stacks get two AZs by default; select more from Fn::GetAZs
        # at deploy time instead of looking them up at synth time.
        return [Fn.select(i, Fn.get_azs()) for i in range(self._az_count)]
