"""Deterministic names: run id, job names, idempotency tokens, tags, ARNs.

Everything that identifies a run is derived from the CloudFormation request, so a duplicate
delivery of the same request finds the jobs the first delivery started instead of starting more.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import PropertyError

RUN_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}-[0-9a-f]{8}$")
TAG_EXPERIMENT = "rollouts:experiment"
TAG_RUN = "rollouts:run"
RUN_MANIFEST = "run.json"
# Every run keeps its data (params, model, ip/, metrics, simtraces, videos) under its own prefix
# inside the experiment's: the simapp's trainer leaves model/.finished behind, and rollouts that
# find one exit at their first iteration (deepracer-simapp bundle/markov/rollout_worker.py,
# exit_if_trainer_done), so no run may ever see another run's model/ or ip/.
RUNS_FOLDER = "runs"


def run_id(experiment: str, stack_id: str, logical_id: str, request_id: str) -> str:
    """``<Experiment>-<8 hex>``: same request -> same id; new Create/Update -> new id."""
    digest = hashlib.sha256(f"{stack_id}{logical_id}{request_id}".encode()).hexdigest()
    return f"{experiment}-{digest[:8]}"


def is_run_id(value: object) -> bool:
    return isinstance(value, str) and bool(RUN_ID_RE.match(value))


def run_prefix(experiment_prefix: str, run: str) -> str:
    """``<experiment prefix>/runs/<run id>``: where run ``run`` keeps all of its data."""
    return f"{experiment_prefix}/{RUNS_FOLDER}/{run}"


def robomaker_token(run: str, chunk: int) -> str:
    """Client request token of the chunk-th StartSimulationJobBatch call (<= 64 chars)."""
    return f"{run}-b{chunk}"


def project_tags(experiment: str, run: str, user_tags: Mapping[str, str]) -> dict[str, str]:
    # The project's own tags win: Delete finds jobs by them.
    return {**user_tags, TAG_EXPERIMENT: experiment, TAG_RUN: run}


@dataclass(frozen=True)
class Place:
    """Partition, region and account of the stack (taken from its StackId ARN)."""

    partition: str
    region: str
    account: str

    @classmethod
    def from_stack_id(cls, stack_id: object) -> Place:
        # arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<uuid>
        parts = stack_id.split(":", 5) if isinstance(stack_id, str) else []
        if len(parts) != 6 or parts[0] != "arn" or not parts[3] or not parts[4].isdigit():
            raise PropertyError(f"StackId is {stack_id!r}; allowed: a CloudFormation stack ARN")
        return cls(partition=parts[1], region=parts[3], account=parts[4])

    def training_job_arn(self, name: str) -> str:
        # SageMaker lowercases the name in the ARN.
        return (
            f"arn:{self.partition}:sagemaker:{self.region}:{self.account}"
            f":training-job/{name.lower()}"
        )
