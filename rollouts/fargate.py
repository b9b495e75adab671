"""What the batch backend can run: its rollouts are Fargate tasks, whose sizes are fixed.

Each experiment gets its own Fargate compute environment (``constructs_lib/rollout_compute.py``)
so that its rollouts carry its own security group (the only one its trainer's Redis admits) and
never share a host, or an instance role, with anything else.

Sizes from the AWS Batch API reference, ``ResourceRequirement`` (Fargate): VCPU 0.25 to 16;
MEMORY per vCPU count in steps of 1024 MiB up to 4 vCPUs, 4096 MiB at 8 and 8192 MiB at 16.
The experiment spec asks for whole vCPUs, so the fractional sizes never come up.
"""

from __future__ import annotations

from rollouts.platform import PlatformConfig
from rollouts.problems import Problem
from rollouts.spec import ExperimentSpec

# vCPUs -> (lowest MiB, highest MiB, step MiB)
FARGATE_SIZES: dict[int, tuple[int, int, int]] = {
    1: (2048, 8192, 1024),
    2: (4096, 16384, 1024),
    4: (8192, 30720, 1024),
    8: (16384, 61440, 4096),
    16: (32768, 122880, 8192),
}


def fargate_memory_choices(vcpus: int) -> range:
    low, high, step = FARGATE_SIZES[vcpus]
    return range(low, high + 1, step)


def rollout_compute_problems(
    spec: ExperimentSpec, config: PlatformConfig, *, file: str
) -> list[Problem]:
    """Why this experiment's rollouts cannot run on this platform (empty: they can); ``file``
    is the experiment file as the user named it. ``validate``, ``plan`` and synth all ask."""
    if config.backend != "batch":
        return []
    vcpus, memory = spec.rollouts.vcpus, spec.rollouts.memory_mib
    problems = []
    if vcpus not in FARGATE_SIZES:
        problems.append(
            Problem(
                file,
                "rollouts.vcpus",
                vcpus,
                "is not allowed on the batch backend: rollouts run as Fargate tasks of "
                f"{', '.join(map(str, FARGATE_SIZES))} vCPUs",
            )
        )
    elif memory not in fargate_memory_choices(vcpus):
        low, high, step = FARGATE_SIZES[vcpus]
        problems.append(
            Problem(
                file,
                "rollouts.memory_mib",
                memory,
                f"is not a Fargate size for {vcpus} vCPUs: {low} to {high} in steps of {step}",
            )
        )
    total = vcpus * spec.rollouts.count
    if total > config.max_vcpus:
        problems.append(
            Problem(
                file,
                "rollouts.count",
                spec.rollouts.count,
                f"x {vcpus} vCPUs = {total} is more than the platform's maxVcpus "
                f"({config.max_vcpus}), the most one experiment may use at once",
            )
        )
    return problems
