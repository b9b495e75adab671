"""Rollouts on AWS RoboMaker (retired 2025-09-10): StartSimulationJobBatch, 1000 jobs per call.

Each call carries a client request token derived from the run id and chunk index, so the service
itself turns a retried or duplicated call into the batch the first call created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from .naming import TAG_RUN, robomaker_token
from .plan import RolloutPlan
from .retry import Retrier, bounded_map, error_code

MAX_JOBS_PER_BATCH = 1000
MAX_WORKERS = 8  # concurrent describe calls; well under RoboMaker's per-account rates
PACKAGE = "deepracer_simulation_environment"
# The workshop's ROS 1 bundle names a package and a launch file.
LAUNCH_FILE = "distributed_training.launch"
# The 6.x container (ROS 2) runs a command: its ENTRYPOINT is ["/bin/bash", "-c"], so the whole
# command line is one string (deepracer-simapp docker/Dockerfile.combined); run.sh is
# docker/files/robomaker/run.sh and keeps the ROLLOUT_IDX it is given in "run" mode.
CONTAINER_COMMAND = "/opt/ml/code/run.sh run distributed_training.launch.py"
# A batch may still queue jobs after its last one starts; give it an hour beyond one job's limit.
BATCH_TIMEOUT_MARGIN_SECONDS = 3600
BATCH_FAILED = frozenset({"Failed", "Canceled", "Canceling", "TimedOut", "TimingOut"})
BATCH_ACCEPTED = frozenset({"InProgress", "Completing", "Completed"})
BATCH_TERMINAL = frozenset({"Failed", "Canceled", "Completed", "TimedOut"})
JOB_FAILED = frozenset({"Failed", "RunningFailed", "Terminating", "Terminated", "Canceled"})


def job_request(plan: RolloutPlan, index: int) -> dict[str, Any]:
    run = plan.run
    rm = run.props.robomaker
    assert rm is not None  # parse_properties guarantees it for Backend=robomaker
    compute: dict[str, Any] = {
        "simulationUnitLimit": rm.simulation_unit_limit,
        "computeType": rm.compute_type,
    }
    if rm.compute_type == "GPU_AND_CPU":
        compute["gpuUnitLimit"] = 1
    return {
        "maxJobDurationInSeconds": rm.max_job_duration_seconds,
        "iamRole": rm.role_arn,
        "failureBehavior": "Fail",
        "simulationApplications": [
            {
                "application": rm.simulation_application_arn,
                "launchConfig": {
                    **(
                        {"command": [CONTAINER_COMMAND]}
                        if rm.app_form == "container"
                        else {"packageName": PACKAGE, "launchFile": LAUNCH_FILE}
                    ),
                    "environmentVariables": plan.worker_env(index),
                },
            }
        ],
        "vpcConfig": {
            "subnets": list(rm.subnets),
            "securityGroups": list(rm.security_groups),
            "assignPublicIp": rm.assign_public_ip,
        },
        "compute": compute,
        "tags": run.tags,
    }


def batch_requests(plan: RolloutPlan) -> list[dict[str, Any]]:
    """One StartSimulationJobBatch request per 1000 workers, each with its own token."""
    rm = plan.run.props.robomaker
    assert rm is not None
    requests = []
    for chunk, start in enumerate(range(0, plan.count, MAX_JOBS_PER_BATCH)):
        jobs = [
            job_request(plan, i) for i in range(start, min(start + MAX_JOBS_PER_BATCH, plan.count))
        ]
        requests.append(
            {
                "clientRequestToken": robomaker_token(plan.run.run_id, chunk),
                "batchPolicy": {
                    "timeoutInSeconds": rm.max_job_duration_seconds + BATCH_TIMEOUT_MARGIN_SECONDS,
                    # Start every job at once: rollouts are useless while others queue.
                    "maxConcurrency": len(jobs),
                },
                "createSimulationJobRequests": jobs,
                "tags": plan.run.tags,
            }
        )
    return requests


def ensure_started(robomaker: Any, retry: Retrier, requests: list[dict[str, Any]]) -> list[str]:
    """Start every chunk; the token makes each call idempotent, so retries are always safe."""

    def start(request: dict[str, Any]) -> str:
        response = retry.call(
            "robomaker:StartSimulationJobBatch",
            lambda: robomaker.start_simulation_job_batch(**request),
            idempotent=True,
        )
        return str(response["arn"])

    return bounded_map(start, requests, MAX_WORKERS)


@dataclass(frozen=True)
class RolloutStatus:
    accepted: bool
    running: int
    failure: str | None
    job_arns: tuple[str, ...] = ()


# The Lambda may describe only batches tagged with its experiment: another experiment's batch
# answers AccessDeniedException, which means "not ours".
FOREIGN: dict[str, Any] = {"status": "<not ours>"}


def describe_batch(
    robomaker: Any, retry: Retrier, arn: str, *, foreign_ok: bool = False
) -> dict[str, Any] | None:
    """The batch, None when it does not exist, ``FOREIGN`` (only with ``foreign_ok``) when the
    role may not describe it (another experiment's batch)."""
    try:
        return retry.call(
            "robomaker:DescribeSimulationJobBatch",
            lambda: robomaker.describe_simulation_job_batch(batch=arn),
        )
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None
        if foreign_ok and error_code(error) == "AccessDeniedException":
            return FOREIGN
        raise


def status(robomaker: Any, retry: Retrier, arns: list[str], count: int) -> RolloutStatus:
    batches = bounded_map(lambda arn: describe_batch(robomaker, retry, arn), arns, MAX_WORKERS)
    accepted = True
    running = 0
    job_arns: list[str] = []
    for arn, batch in zip(arns, batches, strict=True):
        if batch is None:
            # Not describable yet right after StartSimulationJobBatch returned its ARN: pending,
            # not failed (the run's wait limit bounds how long that may last).
            accepted = False
            continue
        state = batch.get("status", "")
        failed = batch.get("failedRequests") or []
        if state in BATCH_FAILED or failed:
            reason = batch.get("failureReason") or ""
            if failed:
                first = failed[0]
                reason = (
                    f"{len(failed)} job requests failed, first: "
                    f"{first.get('failureCode')}: {first.get('failureReason')}"
                )
            return RolloutStatus(
                False, 0, f"simulation job batch {arn} is {state}: {reason or 'no reason given'}"
            )
        if state not in BATCH_ACCEPTED or batch.get("pendingRequests"):
            accepted = False
        for job in batch.get("createdRequests") or []:
            job_arns.append(str(job.get("arn")))
            if job.get("status") in JOB_FAILED:
                return RolloutStatus(
                    False, 0, f"simulation job {job.get('arn')} is {job.get('status')}"
                )
            if job.get("status") in ("Running", "Completed"):
                running += 1
    return RolloutStatus(accepted, min(running, count), None, tuple(job_arns))


def token_pattern(run_id: str) -> re.Pattern[str]:
    """Exactly the tokens of run ``run_id``: ``<run id>-b<chunk>`` (not ``<run id>x-b0``)."""
    return re.compile(rf"^{re.escape(run_id)}-b[0-9]+$")


def find_batches(robomaker: Any, retry: Retrier, run_id: str, known: list[str]) -> list[str]:
    """ARNs of this run's active batches: the known ones plus any found by token or tag.

    ListSimulationJobBatches returns no tags or tokens, so each active batch is described (on a
    small thread pool) and kept when its token is exactly ``<run id>-b<i>`` or its run tag is the
    run id. Batches the role may not describe (AccessDeniedException: the IAM condition on
    ``rollouts:experiment`` refuses other experiments' batches) are not ours and skipped. A known
    ARN is always kept unless it is gone or finished.
    """
    candidates: list[str] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = retry.call(
            "robomaker:ListSimulationJobBatches",
            partial(robomaker.list_simulation_job_batches, **kwargs),
        )
        for summary in page.get("simulationJobBatchSummaries", []):
            if summary.get("status") not in BATCH_TERMINAL:
                candidates.append(str(summary["arn"]))
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    candidates.extend(a for a in known if a not in candidates)
    described = bounded_map(
        lambda arn: describe_batch(robomaker, retry, arn, foreign_ok=True),
        candidates,
        MAX_WORKERS,
    )
    tokens = token_pattern(run_id)
    found = []
    for arn, batch in zip(candidates, described, strict=True):
        if batch is None or batch.get("status") in BATCH_TERMINAL:
            continue
        if arn in known:
            found.append(arn)  # ours by record, even if describing it was refused
            continue
        if batch is FOREIGN:
            continue
        token = str(batch.get("clientRequestToken") or "")
        if tokens.match(token) or (batch.get("tags") or {}).get(TAG_RUN) == run_id:
            found.append(arn)
    return found


def stop(robomaker: Any, retry: Retrier, run_id: str, known: list[str]) -> list[str]:
    """Cancel this run's active batches (cancelling a batch cancels its active jobs)."""
    arns = find_batches(robomaker, retry, run_id, known)

    def cancel(arn: str) -> str:
        try:
            retry.call(
                "robomaker:CancelSimulationJobBatch",
                lambda: robomaker.cancel_simulation_job_batch(batch=arn),
            )
        except ClientError as error:
            if error_code(error) != "ResourceNotFoundException":
                raise
        return arn

    return bounded_map(cancel, arns, MAX_WORKERS)
