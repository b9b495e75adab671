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


def run_prefix(prefix: str, run_id: str) -> str:
    """Where one run keeps all of its data, inside its experiment's prefix. The fan-out Lambda
    has its own copy (lambda/fanout/naming.py); a contract test keeps the two equal."""
    return f"{prefix}/runs/{run_id}"


def video_stream_name(experiment: str, worker: int) -> str:
    return f"{VIDEO_STREAM_PREFIX}{experiment}-{worker}"
