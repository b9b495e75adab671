"""Apply the supervisor's actions: stop, finish, restart, record, notify.

Each action is applied, then recorded in the run's record, then published once (the record says
whether it is new). A Lambda killed between two steps repeats the action on the next sweep: stops
and the finish mark are harmless to repeat, a restart is looked up by its deterministic job name
before it is submitted, and the record merges.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from fanout.naming import TAG_EXPERIMENT, TAG_RUN

from . import records
from .model import Action
from .observe import Settings, run_prefix

LOG = logging.getLogger(__name__)

TAG_WORKER = "rollouts:worker"
REASON_PREFIX = "rollouts supervisor"
# Names Batch reserves for itself (SubmitJob refuses overrides starting with AWS_BATCH).
RESERVED_ENV = "AWS_BATCH"


@dataclass
class Report:
    applied: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notified: int = 0


def stop_reason(action: Action) -> str:
    # Batch shows it as the job's statusReason; observe.OWN_STOP_REASONS knows the prefix, so a
    # job stopped here is never taken for a failed worker.
    return f"{REASON_PREFIX}: {action.rule}: {action.reason}"[:1000]


def restart_name(action: Action) -> str:
    return f"{action.run_id}-w{action.worker}-r{action.attempt}"


def _stop(clients: Any, action: Action) -> None:
    reason = stop_reason(action)
    for job_id in action.job_ids:
        # TerminateJob stops a job in any state (one not started yet is cancelled); an array
        # parent takes its children with it.
        clients.batch.terminate_job(jobId=job_id, reason=reason)
    if action.trainer:
        try:
            clients.sagemaker.stop_training_job(TrainingJobName=action.trainer)
        except ClientError as error:
            # Already stopping or ended: what was asked for holds.
            if error.response.get("Error", {}).get("Code") != "ValidationException":
                raise


def _finish(clients: Any, settings: Settings, action: Action) -> None:
    try:
        clients.s3.put_object(
            Bucket=settings.bucket,
            Key=f"{run_prefix(action.run_id)}/model/.finished",
            Body=b"",
            IfNoneMatch="*",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in records.CONFLICT:
            raise  # present already (the trainer wrote it): fine


def restart_request(action: Action, failed: Mapping[str, Any]) -> dict[str, Any]:
    """SubmitJob for worker ``action.worker`` again, from the failed job's own settings: the same
    queue, definition, environment (ROLLOUT_IDX pinned to the worker, so it rejoins as that
    worker: deepracer-simapp markov/rollout_worker.py numbers its episodes by it) and size."""
    container = failed.get("container") or {}
    env = {
        str(e["name"]): str(e.get("value", ""))
        for e in container.get("environment") or []
        if not str(e.get("name", "")).startswith(RESERVED_ENV)
    }
    env["ROLLOUT_IDX"] = str(action.worker)
    tags = {
        **{
            str(k): str(v)
            for k, v in (failed.get("tags") or {}).items()
            if not k.startswith("aws:")
        },
        TAG_EXPERIMENT: action.experiment,
        TAG_RUN: action.run_id,
        TAG_WORKER: str(action.worker),
    }
    request: dict[str, Any] = {
        "jobName": restart_name(action),
        "jobQueue": str(failed["jobQueue"]),
        "jobDefinition": str(failed["jobDefinition"]),
        "containerOverrides": {
            "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
        },
        "propagateTags": True,
        "tags": tags,
    }
    requirements = container.get("resourceRequirements")
    if requirements:
        request["containerOverrides"]["resourceRequirements"] = [
            {"type": str(r["type"]), "value": str(r["value"])} for r in requirements
        ]
    timeout = (failed.get("timeout") or {}).get("attemptDurationSeconds")
    if timeout:
        request["timeout"] = {"attemptDurationSeconds": int(timeout)}
    return request


def _restart(clients: Any, action: Action) -> str:
    """Submit the restart once: a job of that name already there is the restart."""
    described = clients.batch.describe_jobs(jobs=list(action.job_ids[:1]))
    jobs = described.get("jobs") or []
    if not jobs:
        raise RuntimeError(f"the failed job {action.job_ids[:1]} of {action.run_id} is gone")
    failed = jobs[0]
    name = restart_name(action)
    existing = clients.batch.list_jobs(
        jobQueue=str(failed["jobQueue"]), filters=[{"name": "JOB_NAME", "values": [name]}]
    )
    for job in existing.get("jobSummaryList") or []:
        if job.get("jobName") == name:
            return str(job["jobId"])
    answer = clients.batch.submit_job(**restart_request(action, failed))
    return str(answer["jobId"])


def notify(clients: Any, settings: Settings, action: Action, job_id: str = "") -> None:
    if not settings.topic_arn:
        return
    what = {
        "stop": "stopped",
        "finish": "told to finish",
        "restart": f"worker {action.worker} restarted",
        "outcome": f"ended: {action.outcome}",
    }[action.kind]
    message = {
        "run": action.run_id,
        "experiment": action.experiment,
        "action": action.kind,
        "rule": action.rule,
        "reason": action.reason,
        **({"outcome": action.outcome} if action.outcome else {}),
        **({"jobId": job_id} if job_id else {}),
    }
    clients.sns.publish(
        TopicArn=settings.topic_arn,
        Subject=f"DeepRacer run {action.run_id} {what}"[:100],
        Message=json.dumps(message, indent=1, sort_keys=True),
    )


def apply(clients: Any, settings: Settings, actions: list[Action], *, now: float) -> Report:
    """Apply every action; one that fails is reported and the others still run (the next sweep
    sees what is left)."""
    report = Report()
    for action in actions:
        job_id = ""
        try:
            if action.kind == "stop":
                _stop(clients, action)
            elif action.kind == "finish":
                _finish(clients, settings, action)
            elif action.kind == "restart":
                # The intent first: a Lambda killed after the submit leaves a record that keeps
                # the next passes from submitting that worker again while ListJobs may still
                # hide the job (decide.RESTART_SETTLE_SECONDS).
                new = records.record(clients.s3, settings.bucket, action, now)
                job_id = _restart(clients, action)
                records.record(clients.s3, settings.bucket, action, now, job_id)
            if action.kind != "restart":
                new = records.record(clients.s3, settings.bucket, action, now, job_id)
        except Exception as error:  # one failed action must not keep the others from running
            LOG.exception("%s of %s failed", action.kind, action.run_id)
            report.errors.append(f"{action.kind} {action.run_id}: {type(error).__name__}: {error}")
            continue
        report.applied.append(
            {
                "run": action.run_id,
                "action": action.kind,
                "rule": action.rule,
                "reason": action.reason,
            }
        )
        if new:
            try:
                notify(clients, settings, action, job_id)
                report.notified += 1
            except Exception as error:
                LOG.exception("could not publish %s of %s", action.kind, action.run_id)
                report.errors.append(f"notify {action.run_id}: {type(error).__name__}: {error}")
    return report
