"""One Kinesis video stream per rollout worker, encrypted with the platform key."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_kinesisvideo as kinesisvideo
from constructs import Construct

from rollouts.naming import video_stream_name


class RolloutVideoStreams(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        experiment: str,
        count: int,
        key_arn: str,
        retention_hours: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.streams = [
            kinesisvideo.CfnStream(
                self,
                f"Rollout{worker}",
                name=video_stream_name(experiment, worker),
                data_retention_in_hours=retention_hours,
                media_type="video/h264",
                kms_key_id=key_arn,
            )
            for worker in range(count)
        ]
        self.stream_names = [video_stream_name(experiment, worker) for worker in range(count)]

    def console_url(self, worker: int) -> str:
        region = Stack.of(self).region
        return (
            f"https://{region}.console.aws.amazon.com/kinesisvideo/home?region={region}"
            f"#/streams/streamName/{self.stream_names[worker]}"
        )
