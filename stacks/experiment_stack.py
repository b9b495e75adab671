"""ExperimentStack: one per experiment file; deploy starts a run, destroy stops it (data kept)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Annotations, Aws, CfnOutput, Stack, Tags
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from constructs_lib.auto_evaluation import AutoEvaluation
from constructs_lib.experiment_network import ExperimentSecurityGroups
from constructs_lib.fanout import ExperimentRun
from constructs_lib.job_roles import ExperimentJobRoles
from constructs_lib.platform_parameters import PlatformReference
from constructs_lib.retention import log_retention
from constructs_lib.rollout_compute import FargateRolloutCompute
from constructs_lib.video import RolloutVideoStreams
from rollouts.naming import experiment_prefix, run_prefix
from rollouts.platform import PlatformConfig
from rollouts.run_properties import ExperimentResources, settings
from rollouts.spec import ExperimentSpec
from rollouts.supervision import OUTPUT_NAME, supervision_json

EXPERIMENT_TAG = "rollouts:experiment"
# The platform's run supervisor finds its experiment stacks (and their queues) by this tag.
PLATFORM_TAG = "rollouts:platform"


def evaluation_legs(spec: ExperimentSpec) -> int:
    """Children of the experiment's automatic evaluation (one per track and direction)."""
    e = spec.evaluation
    return 0 if e is None else len(e.tracks) * (2 if e.both_directions else 1)


class ExperimentStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: ExperimentSpec,
        config: PlatformConfig,
        platform_name: str,
        bundle_dir: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add(EXPERIMENT_TAG, spec.name)
        Tags.of(self).add(PLATFORM_TAG, platform_name)
        for key, value in sorted(spec.tags.items()):
            Tags.of(self).add(key, value)
        retention = log_retention(config.log_retention_days)
        platform = PlatformReference(self, platform=platform_name)
        # Logs are encrypted with the platform key (its policy admits CloudWatch Logs).
        log_key = kms.Key.from_key_arn(self, "PlatformKey", platform.key_arn)
        prefix = experiment_prefix(spec.name)

        files = s3_assets.Asset(self, "Files", path=str(bundle_dir))
        video = (
            RolloutVideoStreams(
                self,
                "Video",
                experiment=spec.name,
                count=spec.rollouts.count,
                key_arn=platform.key_arn,
                retention_hours=config.video_retention_hours,
            )
            if spec.video
            else None
        )
        trainer, rollouts = settings(spec)
        # This experiment's own roles and job definition: its reward function runs in its
        # rollouts, so nothing it runs may reach another experiment's data, streams or trainer.
        roles = ExperimentJobRoles(
            self,
            "Jobs",
            experiment_prefix=prefix,
            backend=config.backend,
            platform=platform,
            video_stream_arns=[stream.attr_arn for stream in video.streams] if video else [],
            pull_image_for_rollouts=(
                config.backend == "robomaker" and config.robomaker_app_form == "container"
            ),
        )
        if spec.evaluation is not None and config.backend != "batch":
            Annotations.of(self).add_warning_v2(
                "rollouts:evaluation-needs-batch",
                f"{spec.name}: 'evaluation:' is left out on the {config.backend} backend: "
                "evaluations run as Batch jobs on the experiment's own queue (backend=batch).",
            )
        groups = ExperimentSecurityGroups(self, "Network", vpc_id=platform.vpc_id)
        rollout_groups = [
            groups.rollouts.security_group_id,
            platform.rollout_egress_security_group,
        ]
        job_queue_arn = job_definition_arn = ""
        if config.backend == "batch":
            compute = FargateRolloutCompute(
                self,
                "Rollouts",
                image_uri=platform.image_uri,
                image_repository_arn=platform.image_repository_arn,
                job_role=roles.rollout_role,
                subnet_ids=platform.rollout_subnets,
                security_group_ids=rollout_groups,
                # Its N rollouts, or the legs of an evaluation when it has more of them.
                max_vcpus=spec.rollouts.vcpus * max(spec.rollouts.count, evaluation_legs(spec)),
                spot=config.spot,
                assign_public_ip=config.egress == "public",
                log_retention=retention,
                log_key=log_key,
            )
            job_queue_arn, job_definition_arn = compute.job_queue_arn, compute.job_definition_arn
            if spec.evaluation is not None:
                AutoEvaluation(
                    self,
                    "Evaluation",
                    experiment=spec.name,
                    experiment_prefix=prefix,
                    evaluation=spec.evaluation,
                    bucket_name=platform.bucket_name,
                    key_arn=platform.key_arn,
                    job_queue_arn=job_queue_arn,
                    job_definition_arn=job_definition_arn,
                    vcpus=spec.rollouts.vcpus,
                    memory_mib=spec.rollouts.memory_mib,
                    tags=spec.tags,
                    log_retention=retention,
                    log_key=log_key,
                )
        jobs = ExperimentResources(
            trainer_role_arn=roles.trainer_role.role_arn,
            rollout_role_arn=roles.rollout_role.role_arn,
            trainer_security_group=groups.trainer.security_group_id,
            rollout_security_group=groups.rollouts.security_group_id,
            job_queue_arn=job_queue_arn,
            job_definition_arn=job_definition_arn,
        )
        run = ExperimentRun(
            self,
            "Run",
            experiment=spec.name,
            backend=config.backend,
            prefix=prefix,
            platform=platform,
            jobs=jobs,
            files=files,
            trainer=trainer,
            rollouts=rollouts,
            wait_for=config.wait_for,
            robomaker_app_form=config.robomaker_app_form,
            tags=spec.tags,
            log_retention=retention,
            log_key=log_key,
        )
        if video is not None:
            for stream in video.streams:
                run.node.add_dependency(stream)

        region = Aws.REGION
        outputs = {
            "ExperimentName": spec.name,
            "Backend": config.backend,
            "DataBucket": platform.bucket_name,
            "ExperimentPrefix": prefix,
            "RunId": run.run_id,
            # Every run's data lives under its own prefix (rollouts.naming.run_prefix).
            "RunPrefix": run_prefix(prefix, run.run_id),
            "RolloutCount": str(spec.rollouts.count),
            "VideoStreams": ",".join(video.stream_names) if video else "",
            "TrainingJobConsole": (
                f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}"
                f"#/jobs/{run.run_id}"
            ),
            "DataConsole": (
                f"https://s3.console.aws.amazon.com/s3/buckets/{platform.bucket_name}"
                f"?region={region}&prefix={run_prefix(prefix, run.run_id)}/"
            ),
        }
        if config.backend == "batch":
            outputs["JobQueue"] = job_queue_arn
            # What `rollouts evaluate` submits with: the experiment's own job definition and size.
            outputs["RolloutJobDefinition"] = job_definition_arn
            outputs["RolloutVcpus"] = str(spec.rollouts.vcpus)
            outputs["RolloutMemoryMib"] = str(spec.rollouts.memory_mib)
            outputs["AutoEvaluation"] = (
                ",".join(spec.evaluation.tracks) if spec.evaluation is not None else ""
            )
            outputs["RolloutsConsole"] = (
                f"https://{region}.console.aws.amazon.com/batch/home?region={region}#jobs"
            )
        else:
            outputs["SimulationJobBatchArn"] = run.attribute("SimulationJobBatchArn")
        if video is not None:
            outputs["VideoConsole"] = video.console_url(0)
        for key, value in outputs.items():
            CfnOutput(self, key, value=value or "-")
        CfnOutput(
            self,
            OUTPUT_NAME,
            value=supervision_json(spec),
            description="The run supervisor's rules for this experiment (rollouts: on_failure, "
            "max_restarts, stall_minutes; budget_usd) and its hourly rates",
        )
