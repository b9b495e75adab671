"""What one run starts, computed before anything starts (so bad input starts nothing)."""

from __future__ import annotations

from dataclasses import dataclass

from .naming import RUN_MANIFEST, Place, project_tags, run_prefix
from .props import RunProps


@dataclass(frozen=True)
class Run:
    """One run of an experiment: its id, properties and where its stack lives."""

    run_id: str
    props: RunProps
    place: Place

    @property
    def training_job_name(self) -> str:
        return self.run_id

    @property
    def training_job_arn(self) -> str:
        return self.place.training_job_arn(self.run_id)

    @property
    def tags(self) -> dict[str, str]:
        return project_tags(self.props.experiment, self.run_id, self.props.tags)

    @property
    def manifest_key(self) -> str:
        """The experiment's record of its current run (the fan-out's, not the run's data)."""
        return f"{self.props.prefix}/{RUN_MANIFEST}"

    @property
    def data_prefix(self) -> str:
        """Where the trainer and the rollouts of this run share state."""
        return run_prefix(self.props.prefix, self.run_id)


@dataclass(frozen=True)
class RolloutPlan:
    """The environment every rollout worker gets (the simapp reads these variables)."""

    run: Run
    yaml_keys: tuple[str, ...]  # per worker, relative to Prefix (as ROLLOUT_YAML_NAMES)
    model_metadata_key: str  # relative to Prefix

    @property
    def count(self) -> int:
        return self.run.props.rollout_count

    def common_env(self) -> dict[str, str]:
        p = self.run.props
        return {
            "SAGEMAKER_SHARED_S3_BUCKET": p.bucket,
            "SAGEMAKER_SHARED_S3_PREFIX": self.run.data_prefix,
            "APP_REGION": self.run.place.region,
            "ENABLE_KINESIS": "true" if p.video_enabled else "false",
            # A full key in SAGEMAKER_SHARED_S3_BUCKET (the simapp does not add the prefix).
            "MODEL_METADATA_FILE_S3_KEY": f"{self.run.data_prefix}/{self.model_metadata_key}",
            "NUM_WORKERS": str(self.count),
        }

    def worker_env(self, index: int) -> dict[str, str]:
        p = self.run.props
        env = {
            **self.common_env(),
            "ROLLOUT_IDX": str(index),
            "WORLD_NAME": p.worlds[index],
            # Relative to SAGEMAKER_SHARED_S3_PREFIX: the simapp joins the two
            # (bundle/src/deepracer_simulation_environment/scripts/
            # download_params_and_roslaunch_agent.py, get_s3_key(s3_prefix, s3_yaml_name)).
            "S3_YAML_NAME": self.yaml_keys[index],
        }
        # RoboMaker rejects empty values (min length 1): omit the stream when video is off.
        if p.video_enabled:
            env["KINESIS_VIDEO_STREAM_NAME"] = p.video_stream(index)
        return env
