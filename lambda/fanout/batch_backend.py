"""Rollouts on AWS Batch: one array job of size N (a plain job when N == 1).

Batch has no idempotency token and ``ListJobs`` is eventually consistent, so the handler persists
what it knows (a marker under ``<Prefix>/``: submit attempted at, job id) and never resubmits in
the invocation that saw an unknown outcome; see ``handler._ensure_batch``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import Any

from .errors import PropertyError
from .plan import RolloutPlan
from .retry import Retrier

# AWS Batch quota: "Maximum job payload size (for SubmitJob API operations): 30 KiB".
SUBMIT_PAYLOAD_LIMIT = 30 * 1024
ACTIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
NOT_YET_STARTED = ("SUBMITTED", "PENDING", "RUNNABLE")
STOP_REASON = "stopped by the experiment's fan-out custom resource"


def _joined(values: list[str], what: str) -> str:
    for value in values:
        if "," in value:
            raise PropertyError(f"{what} entry {value!r} contains ','; allowed: no commas")
    return ",".join(values)


def _shared_or_all(values: tuple[str, ...]) -> list[str]:
    # One entry when every worker shares it: keeps N = 1000 well inside the payload quota.
    return list(values[:1]) if len(set(values)) == 1 else list(values)


def submit_request(plan: RolloutPlan) -> dict[str, Any]:
    run = plan.run
    props = run.props
    assert props.batch is not None  # parse_properties guarantees it for Backend=batch
    env = {
        **plan.common_env(),
        # The image's entrypoint maps AWS_BATCH_JOB_ARRAY_INDEX to ROLLOUT_IDX and picks entry
        # ROLLOUT_IDX of each list; a one-entry list is shared by every worker.
        "ROLLOUT_WORLD_NAMES": _joined(_shared_or_all(props.worlds), "Worlds"),
        "ROLLOUT_VIDEO_STREAMS": _joined(list(props.video_streams), "VideoStreams"),
        "ROLLOUT_YAML_NAMES": _joined(_shared_or_all(plan.yaml_keys), "YAML"),
    }
    request: dict[str, Any] = {
        "jobName": run.run_id,
        "jobQueue": props.batch.job_queue_arn,
        "jobDefinition": props.batch.job_definition_arn,
        "containerOverrides": {
            "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
            "resourceRequirements": [
                {"type": "VCPU", "value": str(props.batch.vcpus)},
                {"type": "MEMORY", "value": str(props.batch.memory_mib)},
            ],
        },
        "propagateTags": True,
        "timeout": {"attemptDurationSeconds": props.batch.attempt_duration_seconds},
        "tags": run.tags,
    }
    # arrayProperties.size must be 2..10000, so a single rollout is a plain job.
    if plan.count > 1:
        request["arrayProperties"] = {"size": plan.count}
    size = len(json.dumps(request))
    if size > SUBMIT_PAYLOAD_LIMIT:
        raise PropertyError(
            f"the SubmitJob request for {plan.count} rollouts is {size} bytes; allowed: "
            f"{SUBMIT_PAYLOAD_LIMIT} (Batch job payload quota); use shorter or fewer distinct "
            "track and stream names"
        )
    return request


def find_jobs(batch: Any, retry: Retrier, queue: str, job_name: str) -> list[dict[str, Any]]:
    """Every job named ``job_name`` in the queue, any status (filters ignore jobStatus)."""
    jobs: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "jobQueue": queue,
        "filters": [{"name": "JOB_NAME", "values": [job_name]}],
    }
    while True:
        page = retry.call("batch:ListJobs", partial(batch.list_jobs, **kwargs))
        # JOB_NAME filters match case-insensitively and by prefix with '*': keep exact names.
        jobs.extend(j for j in page.get("jobSummaryList", []) if j.get("jobName") == job_name)
        if not page.get("nextToken"):
            return jobs
        kwargs["nextToken"] = page["nextToken"]


def submit(batch: Any, retry: Retrier, request: dict[str, Any]) -> str:
    """One SubmitJob; returns the job id. Throttling (refused, nothing started) is retried;
    anything else, a 5xx or a timeout whose request may have been processed included, is raised
    at once: the caller must not resubmit before ListJobs (eventually consistent) had time to
    show a job that the lost request may have created."""
    response = retry.call("batch:SubmitJob", lambda: batch.submit_job(**request), idempotent=False)
    return str(response["jobId"])


@dataclass(frozen=True)
class RolloutStatus:
    accepted: bool
    running: int
    failure: str | None


def status(batch: Any, retry: Retrier, job_id: str, count: int) -> RolloutStatus:
    jobs = retry.call("batch:DescribeJobs", lambda: batch.describe_jobs(jobs=[job_id]))["jobs"]
    if not jobs:
        return RolloutStatus(accepted=False, running=0, failure=None)
    job = jobs[0]
    state = job.get("status", "")
    if state == "FAILED":
        reason = job.get("statusReason") or "no reason given"
        return RolloutStatus(
            accepted=False, running=0, failure=f"Batch job {job_id} FAILED: {reason}"
        )
    if count == 1:
        running = 1 if state in ("RUNNING", "SUCCEEDED") else 0
        return RolloutStatus(accepted=True, running=running, failure=None)
    summary = (job.get("arrayProperties") or {}).get("statusSummary") or {}
    failed = int(summary.get("FAILED", 0))
    if failed:
        return RolloutStatus(
            accepted=True,
            running=0,
            failure=f"{failed} of {count} rollouts of Batch job {job_id} FAILED",
        )
    # A worker whose index >= episodes per iteration exits at once: SUCCEEDED counts as started.
    running = int(summary.get("RUNNING", 0)) + int(summary.get("SUCCEEDED", 0))
    return RolloutStatus(accepted=True, running=running, failure=None)


def _cancel_and_terminate(batch: Any, retry: Retrier, job_id: str) -> None:
    retry.call("batch:CancelJob", partial(batch.cancel_job, jobId=job_id, reason=STOP_REASON))
    retry.call("batch:TerminateJob", partial(batch.terminate_job, jobId=job_id, reason=STOP_REASON))


def stop_ids(
    batch: Any, retry: Retrier, job_ids: list[str], *, job_name: str, queue: str | None
) -> list[str]:
    """Cancel and terminate the active ones of jobs known by id (DescribeJobs by id, unlike
    ListJobs, does not lag behind SubmitJob); returns the ids stopped. The ids come from a
    record in S3, so a job is stopped only when it is this run's: its name and (when known)
    its queue must match; any other id is left alone."""
    if not job_ids:
        return []
    jobs = retry.call("batch:DescribeJobs", lambda: batch.describe_jobs(jobs=list(job_ids)))
    stopped = []
    for job in jobs.get("jobs", []):
        if job.get("jobName") != job_name or (queue is not None and job.get("jobQueue") != queue):
            continue
        if job.get("status") in ACTIVE:
            _cancel_and_terminate(batch, retry, str(job["jobId"]))
            stopped.append(str(job["jobId"]))
    return stopped


def stop(
    batch: Any, retry: Retrier, queue: str, job_name: str, skip: tuple[str, ...] = ()
) -> list[str]:
    """Cancel and terminate every active job named ``job_name`` (except ``skip``, already
    stopped by id); returns their ids.

    CancelJob stops what has not started (a pending array parent takes its children with it);
    TerminateJob stops what has. Both are no-ops on finished jobs, so sending both is safe.
    """
    stopped = []
    for job in find_jobs(batch, retry, queue, job_name):
        if job.get("status") not in ACTIVE or job["jobId"] in skip:
            continue
        _cancel_and_terminate(batch, retry, str(job["jobId"]))
        stopped.append(str(job["jobId"]))
    return stopped
