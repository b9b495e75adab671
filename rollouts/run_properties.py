"""The properties of an experiment's ``Custom::RolloutsRun``, from its spec and the platform.

One function builds them for both users: the experiment stack (platform values are CloudFormation
tokens) and ``rollouts plan --requests`` (platform values are visible placeholders), so the
requests the plan writes come from what a deploy really sends. No CDK imports here.
Contract with the Lambda: docs/fanout-contract.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rollouts.naming import experiment_prefix, video_stream_name

if TYPE_CHECKING:  # annotations only: the spec's cost check imports this module
    from rollouts.spec import ExperimentSpec

# Rollouts stop with the trainer; the margin covers simulator start-up.
ROLLOUT_MARGIN_SECONDS = 1800


class PlatformValues(Protocol):
    """What an experiment reads from its platform (tokens in a stack, placeholders offline)."""

    @property
    def bucket_name(self) -> str: ...
    @property
    def image_uri(self) -> str: ...
    @property
    def trainer_subnets(self) -> list[str]: ...
    @property
    def simulation_application_arn(self) -> str: ...
    @property
    def rollout_subnets(self) -> list[str]: ...
    @property
    def rollout_egress_security_group(self) -> str: ...
    @property
    def assign_public_ip(self) -> str: ...


@dataclass(frozen=True)
class ExperimentResources:
    """What each experiment owns for its jobs (constructs_lib/job_roles.py,
    experiment_network.py, rollout_compute.py): tokens in a stack, placeholders offline."""

    trainer_role_arn: str
    rollout_role_arn: str
    # Redis on the trainer admits only the experiment's own rollout group.
    trainer_security_group: str
    rollout_security_group: str
    job_queue_arn: str = ""  # "" on the RoboMaker backend
    job_definition_arn: str = ""  # "" on the RoboMaker backend


@dataclass(frozen=True)
class TrainerSettings:
    instance_type: str
    volume_gb: int
    max_runtime_seconds: int
    # In the data bucket: an experiment's prefix (with pretrained_run) or a model's own prefix.
    pretrained_prefix: str | None = None
    pretrained_run: str | None = None  # "latest" or a run id; None: pretrained_prefix is a model
    pretrained_checkpoint: str = "last"

    def pretrained_reads(self) -> list[str]:
        """Keys (patterns) the fan-out reads to find the pretrained model and copy its chosen
        checkpoint into the new run's prefix (lambda/fanout/pretrained.py)."""
        if self.pretrained_prefix is None:
            return []
        if self.pretrained_run is None:
            return [f"{self.pretrained_prefix}/model/*"]
        return [f"{self.pretrained_prefix}/run.json", f"{self.pretrained_prefix}/runs/*/model/*"]

    def pretrained_lists(self) -> list[str]:
        """Prefixes (patterns) the fan-out lists: the pretrained model's model/ folder."""
        if self.pretrained_prefix is None:
            return []
        if self.pretrained_run is None:
            return [f"{self.pretrained_prefix}/model/*"]
        return [f"{self.pretrained_prefix}/runs/*/model/*"]


@dataclass(frozen=True)
class RolloutSettings:
    count: int
    worlds: Sequence[str]
    video_streams: Sequence[str]
    vcpus: int
    memory_mib: int
    max_duration_seconds: int


def settings(spec: ExperimentSpec) -> tuple[TrainerSettings, RolloutSettings]:
    """The trainer and rollout settings an experiment file asks for."""
    max_seconds = spec.trainer.max_run_minutes * 60
    pre = spec.pretrained
    trainer = TrainerSettings(
        instance_type=spec.trainer.instance_type,
        volume_gb=spec.trainer.volume_gb,
        max_runtime_seconds=max_seconds,
        pretrained_prefix=pre.bucket_prefix if pre else None,
        pretrained_run=pre.run if pre else None,
        pretrained_checkpoint=pre.checkpoint if pre else "last",
    )
    rollouts = RolloutSettings(
        count=spec.rollouts.count,
        worlds=spec.worker_tracks,
        video_streams=(
            [video_stream_name(spec.name, i) for i in range(spec.rollouts.count)]
            if spec.video
            else []
        ),
        vcpus=spec.rollouts.vcpus,
        memory_mib=spec.rollouts.memory_mib,
        max_duration_seconds=max_seconds + ROLLOUT_MARGIN_SECONDS,
    )
    return trainer, rollouts


def run_properties(
    *,
    experiment: str,
    backend: str,
    platform: PlatformValues,
    jobs: ExperimentResources,
    files_bucket: str,
    files_key: str,
    trainer: TrainerSettings,
    rollouts: RolloutSettings,
    wait_for: str,
    tags: Mapping[str, str],
    robomaker_app_form: str = "bundle",
) -> dict[str, Any]:
    """ResourceProperties of the run (every scalar a string, as CloudFormation delivers it)."""
    properties: dict[str, Any] = {
        "Experiment": experiment,
        "Backend": backend,
        "Bucket": platform.bucket_name,
        "Prefix": experiment_prefix(experiment),
        "FilesBucket": files_bucket,
        "FilesKey": files_key,
        "RolloutCount": str(rollouts.count),
        "Worlds": list(rollouts.worlds),
        "VideoStreams": list(rollouts.video_streams),
        "WaitFor": wait_for,
        "Trainer": {
            "ImageUri": platform.image_uri,
            "RoleArn": jobs.trainer_role_arn,
            "InstanceType": trainer.instance_type,
            "VolumeSizeGb": str(trainer.volume_gb),
            "MaxRuntimeSeconds": str(trainer.max_runtime_seconds),
            "Subnets": platform.trainer_subnets,
            "SecurityGroups": [jobs.trainer_security_group],
            **(
                {
                    "PretrainedBucket": platform.bucket_name,
                    "PretrainedPrefix": trainer.pretrained_prefix,
                    "PretrainedCheckpoint": trainer.pretrained_checkpoint,
                    **({"PretrainedRun": trainer.pretrained_run} if trainer.pretrained_run else {}),
                }
                if trainer.pretrained_prefix
                else {}
            ),
        },
        "Tags": dict(sorted(tags.items())),
    }
    if backend == "batch":
        properties["Batch"] = {
            "JobQueueArn": jobs.job_queue_arn,
            "JobDefinitionArn": jobs.job_definition_arn,
            "AttemptDurationSeconds": str(rollouts.max_duration_seconds),
            "Vcpus": str(rollouts.vcpus),
            "MemoryMib": str(rollouts.memory_mib),
        }
    else:
        properties["RoboMaker"] = {
            "SimulationApplicationArn": platform.simulation_application_arn,
            "RoleArn": jobs.rollout_role_arn,
            "Subnets": platform.rollout_subnets,
            "SecurityGroups": [jobs.rollout_security_group, platform.rollout_egress_security_group],
            "MaxJobDurationSeconds": str(rollouts.max_duration_seconds),
            "SimulationUnitLimit": str(min(15, max(1, rollouts.vcpus // 2))),
            "ComputeType": "CPU",
            "AssignPublicIp": platform.assign_public_ip,
            "AppForm": robomaker_app_form,
        }
    return properties
