"""What one run starts, computed before anything starts (so bad input starts nothing)."""

from __future__ import annotations

from dataclasses import dataclass

from .naming import RUN_MANIFEST, Place, project_tags
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
        return f"{self.props.prefix}/{RUN_MANIFEST}"


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
            "SAGEMAKER_SHARED_S3_PREFIX": p.prefix,
            "APP_REGION": self.run.place.region,
            "ENABLE_KINESIS": "true" if p.video_enabled else "false",
            "MODEL_METADATA_FILE_S3_KEY": f"{p.prefix}/{self.model_metadata_key}",
            "NUM_WORKERS": str(self.count),
        }

    def worker_env(self, index: int) -> dict[str, str]:
        p = self.run.props
        env = {
            **self.common_env(),
            "ROLLOUT_IDX": str(index),
            "WORLD_NAME": p.worlds[index],
            # The RoboMaker-era simapp reads S3_YAML_NAME as the object's full key in the bucket.
            # (Batch workers get relative names in ROLLOUT_YAML_NAMES: its image adds Prefix.)
            "S3_YAML_NAME": f"{p.prefix}/{self.yaml_keys[index]}",
        }
        # RoboMaker rejects empty values (min length 1): omit the stream when video is off.
        if p.video_enabled:
            env["KINESIS_VIDEO_STREAM_NAME"] = p.video_stream(index)
        return env
