"""PlatformStack: provisioned once per account and region, shared by every experiment."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Fn, Stack
from constructs import Construct

from constructs_lib.batch_backend import BatchRolloutBackend
from constructs_lib.network import RolloutNetwork
from constructs_lib.platform_parameters import PARAMETER_ROOT, PlatformParameters
from constructs_lib.retention import log_retention
from constructs_lib.robomaker_backend import RoboMakerRolloutBackend
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
        # The job roles and the Batch job definition belong to each experiment (its reward
        # function runs in its rollouts): constructs_lib/job_roles.py, rollout_job.py.
        image = SimappImage(self, "Simapp", base_image=config.simapp_image)

        job_queue_arn = simulation_application_arn = NOT_USED
        if config.backend == "batch":
            backend = BatchRolloutBackend(
                self,
                "Batch",
                network=network,
                instance_types=config.rollout_instance_types,
                spot=config.spot,
                max_vcpus=config.max_vcpus,
                gpu=config.gpu,
            )
            job_queue_arn = backend.job_queue.job_queue_arn
        else:
            robomaker = RoboMakerRolloutBackend(
                self,
                "RoboMaker",
                bucket=data.bucket,
                image=image,
                app_form=config.robomaker_app_form,
            )
            simulation_application_arn = robomaker.application_arn

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
                "trainer-subnets": Fn.join(",", network.trainer_subnets.subnet_ids),
                "trainer-security-group": network.trainer_security_group.security_group_id,
                "rollout-subnets": Fn.join(",", network.rollout_subnets.subnet_ids),
                "rollout-security-group": network.rollout_security_group.security_group_id,
                "assign-public-ip": str(network.assign_public_ip).lower(),
                "job-queue-arn": job_queue_arn,
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
            "ParameterPath",
            value=f"{PARAMETER_ROOT}/{platform_name}/",
            description="SSM parameters that experiment stacks read at deploy time",
        )

    @property
    def availability_zones(self) -> list[str]:
        # Environment-agnostic stacks get two AZs by default; select more from Fn::GetAZs
        # at deploy time instead of looking them up at synth time.
        return [Fn.select(i, Fn.get_azs()) for i in range(self._az_count)]
