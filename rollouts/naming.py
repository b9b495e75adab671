"""Names shared by the stacks, the fan-out and the CLI (one definition, no CDK import)."""

from __future__ import annotations

STACK_PREFIX = "DeepRacerRollouts"
EXPERIMENTS_PREFIX = "experiments"
# Kinesis video streams are named, not generated: the rollout role is scoped to this prefix.
VIDEO_STREAM_PREFIX = "rollouts-"


def platform_stack_name(platform: str = "default") -> str:
    return f"{STACK_PREFIX}-Platform" + ("" if platform == "default" else f"-{platform}")


def stack_name(experiment: str) -> str:
    return f"{STACK_PREFIX}-{experiment}"


def experiment_prefix(experiment: str) -> str:
    return f"{EXPERIMENTS_PREFIX}/{experiment}"


def video_stream_name(experiment: str, worker: int) -> str:
    return f"{VIDEO_STREAM_PREFIX}{experiment}-{worker}"
