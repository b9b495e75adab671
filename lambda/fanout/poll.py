"""is_complete for Create and Update: start the trainer and the rollouts (idempotently), then poll
until they are accepted (or running); on any failure stop what this run started and say why."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from botocore.parsers import ResponseParserError

from . import (
    batch_backend,
    common,
    current_request,
    files,
    pretrained,
    robomaker_backend,
    stopping,
    trainer,
)
from .clients import Clients, get_clients
from .common import (
    FAIL_BY_SECONDS,
    IS_COMPLETE_RESERVE_SECONDS,
    IS_COMPLETE_TIMEOUT_SECONDS,
    REASON_PART,
    REPORT_MARGIN_SECONDS,
    WAIT_LIMIT_SECONDS,
    _budget,
    _describe_error,
    _store,
    _text_or_none,
    properties_hash,
)
from .delete import _delete_step, _keep_only
from .errors import (
    MAX_REASON,
    PollAgainError,
    PropertyError,
    StartError,
    clip,
)
from .manifest import _data, _run_manifest, _stop_previous_runs
from .naming import Place, is_run_id
from .plan import Run
from .progress import (
    Progress,
    _ancestors,
    _check_not_stopped,
    _check_wait_limit,
    _claim,
    _note_wait,
    _outcome,
    _plan,
    _read_record,
    _record_error,
    _update_record,
)
from .props import RunProps, parse_properties
from .retry import (
    Retrier,
    ThrottledTooLongError,
    is_throttle,
    is_transient,
)
from .stopping import StopReport, Target

LOG = logging.getLogger(__name__)


def _is_complete(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Start the run (first call(s)), then poll until it is accepted (or running)."""
    if event.get("RequestType") == "Delete":
        if not event.get("StopPending"):
            return {"IsComplete": True}
        rid = str(event.get("PhysicalResourceId", ""))
        raw = event.get("ResourceProperties")
        try:
            delete_props: RunProps | Any = parse_properties(raw)
        except PropertyError:
            delete_props = raw
        cleanup = _budget(context, IS_COMPLETE_TIMEOUT_SECONDS, REPORT_MARGIN_SECONDS).work
        return _delete_step(get_clients(), cleanup, rid, delete_props, on_event=False)
    if event.get("NoOp"):
        return _keep_only(event, context) if event.get("SweepOthers") else {"IsComplete": True}
    props = parse_properties(event.get("ResourceProperties"))
    rid = str(event["PhysicalResourceId"])
    run = Run(run_id=rid, props=props, place=Place.from_stack_id(event.get("StackId")))
    clients = get_clients()
    budget = _budget(context, IS_COMPLETE_TIMEOUT_SECONDS, IS_COMPLETE_RESERVE_SECONDS)
    planned_at = event.get("PlannedAt")
    shared_yaml = event.get("SharedYaml")
    progress = Progress(
        run=run,
        previous_run=event.get("PreviousRunId"),
        properties_hash=properties_hash(event.get("ResourceProperties")),
        planned_at=float(planned_at) if isinstance(planned_at, int | float | str) else None,
        shared_yaml=shared_yaml if isinstance(shared_yaml, bool) else None,
        pretrained_prefix=_text_or_none(event.get("PretrainedPrefix")),
        request_id=_text_or_none(event.get("RequestId")),
    )
    try:
        _check_wait_limit(clients, budget.work, progress)  # first: also when all is throttled
        return _advance(clients, budget.work, progress, event.get("OldResourceProperties"))
    except (ThrottledTooLongError, PollAgainError) as error:
        LOG.warning("polling again: %s", error)
        _note_wait(clients, budget.cleanup, progress, error.cause)
        return {"IsComplete": False}  # throttling alone never fails the deploy
    except Exception as error:  # whatever it was: stop this run and say why
        if isinstance(error, ClientError) and is_throttle(error):
            _note_wait(clients, budget.cleanup, progress, f"{error.operation_name} was throttled")
            return {"IsComplete": False}
        LOG.exception("run %s failed", rid)
        outcome = _failed_run(clients, budget.cleanup, progress, _describe_error(error))
    if isinstance(outcome, StartError):
        raise outcome from None
    return outcome


def _failed_run(
    clients: Clients, retry: Retrier, progress: Progress, cause: str
) -> StartError | dict[str, Any]:
    """Mark the run stopped (the first reason stays), stop it, and report; while a start attempt
    whose outcome is unknown may still turn up, poll again (up to FAIL_BY_SECONDS after
    planning) so that what turns up is stopped too."""
    run = progress.run
    now = common.wall_clock()
    report = stopping.stop_recorded_run(
        clients,
        retry,
        run.run_id,
        Target.of(run.props),
        reason=cause,
        now=now,
        known=progress.known,
        mark_required=False,  # this very invocation is the one that could start more
    )
    in_time = progress.planned_at is not None and now - progress.planned_at < FAIL_BY_SECONDS
    if report.waiting and not report.errors and in_time:
        LOG.warning("run %s failed; still watching: %s", run.run_id, report.waiting)
        return {"IsComplete": False}
    return StartError(_failure_reason(run.run_id, report.reason or cause, report))


def _failure_reason(rid: str, cause: str, report: StopReport) -> str:
    """One line <= MAX_REASON: what was stopped and what could NOT be always fit; the cause gets
    whatever room remains."""
    head = f"run {rid} failed to start: "
    tail = f"; stopped: {report.summary()}"
    if report.errors:
        tail += f"; could NOT stop: {clip('; '.join(report.errors), REASON_PART)}"
    if report.waiting:
        tail += "; a rollouts start with an unknown outcome may still turn up: the Delete stops it"
    room = max(60, MAX_REASON - len(head) - len(tail))
    return head + clip(cause, room) + tail


def _advance(
    clients: Clients, retry: Retrier, progress: Progress, old_props: Any
) -> dict[str, Any]:
    run = progress.run
    _check_not_stopped(clients, retry, run)
    latest = current_request.superseded_by(
        clients, retry, run.props, {"RequestId": progress.request_id}
    )
    if latest is not None:
        raise StartError(
            f"request {progress.request_id} is stale: a later {latest.get('requestType')} "
            f"({latest.get('requestId')}, run {latest.get('runId')}) replaced it, so this poll "
            "starts nothing"
        )
    job = trainer.describe(clients.sagemaker, retry, run.training_job_name)
    if job is None:
        _start_trainer(clients, retry, progress, old_props)
        job = trainer.describe(clients.sagemaker, retry, run.training_job_name)
        if job is None:
            raise StartError(f"training job {run.training_job_name} not found after creating it")
    else:
        trainer.check_ours(job, run.props)  # not ours: fail (and the cleanup leaves it alone)
    _ensure_rollouts(clients, retry, progress)
    if progress.started:
        # Readiness from a description taken after the starts, not before them.
        job = trainer.describe(clients.sagemaker, retry, run.training_job_name) or job
    return _check(clients, retry, progress, job)


def _start_trainer(clients: Clients, retry: Retrier, progress: Progress, old_props: Any) -> None:
    """No trainer of this name yet: plan, record the run, stop the previous run(s) (Update),
    write the files, clear ip/, create the trainer. Repeating all of it is harmless until the
    trainer exists."""
    run = progress.run
    props = run.props
    # Plan first: an asset or S3 failure here leaves the old run alone.
    plan = _plan(clients, retry, progress)
    # The record exists before anything starts (a refused write fails the run here, with
    # nothing started): Delete and later sweeps find the run by it.
    try:
        _store(clients, retry, props).create(
            run.run_id, lambda: _ancestors(clients, retry, progress)
        )
    except Exception as error:
        raise _record_error(run, error) from error
    previous = progress.previous_run
    if is_run_id(previous) and previous != run.run_id:
        _stop_previous_runs(
            clients, retry, props, previous=str(previous), old_props=old_props, new_id=run.run_id
        )
    # The run's own prefix: nothing there can come from an earlier run. ip/ is cleared anyway, in
    # case a trainer of this name ever wrote one (it never should).
    files.write_files(clients.s3, retry, props.bucket, run.data_prefix, plan.rendered)
    if plan.pretrained is not None:
        # Into the run's own prefix, by this function (which may read the source): the
        # trainer reads the copy, and no job role needs a grant on another experiment's data.
        name = pretrained.copy_into(
            clients.s3, retry, plan.pretrained, bucket=props.bucket, data_prefix=run.data_prefix
        )
        LOG.info("pretrained checkpoint %s copied from %s", name, plan.pretrained.prefix)
    files.clear_handshake_markers(clients.s3, retry, props.bucket, run.data_prefix)
    _check_not_stopped(clients, retry, run)
    arn = trainer.create(clients.sagemaker, retry, plan.training_request)
    progress.started = True
    LOG.info("training job %s created", arn)
    _check_not_stopped(clients, retry, run)


def _ensure_batch(clients: Clients, retry: Retrier, progress: Progress) -> str:
    """The run's array job id, submitted at most once whatever ListJobs' lag.

    1. A job id in the run record is the job (later polls DescribeJobs it by id).
    2. Else ListJobs by name; a hit is recorded.
    3. Else, if a submit was attempted and its outcome is unknown (5xx, timeout, lost response,
       killed Lambda), poll again: never resubmit. Batch has no idempotency token and no lookup
       proves a job absent, so a resubmit could start a second array job whenever ListJobs lags
       longer than any settle time we could pick. The price: a lost submit whose job never
       appears fails the run at the wait limit instead of being retried.
    4. Else claim the submit (conditional write of ``submitAttemptAt``), then SubmitJob once.
       A definite refusal (throttling until the deadline, a 4xx) started nothing: the claim is
       withdrawn so that the next poll may submit.
    """
    run = progress.run
    props = run.props
    assert props.batch is not None
    record = _read_record(clients, retry, run)
    if record.document.get("batchJobId"):
        return str(record.document["batchJobId"])
    jobs = batch_backend.find_jobs(clients.batch, retry, props.batch.job_queue_arn, run.run_id)
    if jobs:
        job_id = str(max(jobs, key=lambda j: j.get("createdAt", 0))["jobId"])
        _update_record(clients, retry, run, record, {"batchJobId": job_id})
        return job_id
    attempted = record.document.get("submitAttemptAt")
    if isinstance(attempted, int | float):
        outcome = record.document.get("startOutcome") or "no answer (the invocation ended)"
        raise PollAgainError(
            f"the SubmitJob of {run.run_id} {common.wall_clock() - attempted:.0f}s ago had an unknown "
            f"outcome ({outcome}) and ListJobs does not show its job yet; it is never "
            "submitted again",
            cause=f"SubmitJob had an unknown outcome ({outcome}) and ListJobs has not shown "
            "its job",
        )
    request = _plan(clients, retry, progress).batch_request
    assert request is not None
    _check_not_stopped(clients, retry, run)
    claimed = _claim(clients, retry, run, record, "submitAttemptAt")
    try:
        job_id = batch_backend.submit(clients.batch, retry, request)
    except Exception as error:
        # A garbled or cut-off answer may follow a request that did start the job: unknown,
        # like a 5xx. A request botocore refused to send (ParamValidationError) started nothing.
        unknown = not isinstance(error, ThrottledTooLongError) and (
            is_transient(error)
            or isinstance(error, ResponseParserError)
            or (isinstance(error, BotoCoreError) and not isinstance(error, ParamValidationError))
        )
        if unknown:
            outcome = _outcome(error)
            _update_record(clients, retry, run, claimed, {"startOutcome": outcome})
            raise PollAgainError(
                f"SubmitJob of {run.run_id} had an unknown outcome "
                f"({_describe_error(error)}); checking again on the next poll",
                cause=f"SubmitJob answered {outcome}",
            ) from error
        # Refused: nothing started, so the claim goes (if that write fails, the attempt stays
        # unresolved and the run waits, which is safe).
        _update_record(clients, retry, run, claimed, {"submitAttemptAt": None})
        raise
    LOG.info("batch job %s submitted", job_id)
    progress.started = True
    progress.known["RolloutJobId"] = job_id
    _update_record(clients, retry, run, claimed, {"batchJobId": job_id})
    _check_not_stopped(clients, retry, run)
    return job_id


def _ensure_rollouts(clients: Clients, retry: Retrier, progress: Progress) -> None:
    """Find this run's rollouts (record / ListJobs; batches by token); start them if absent."""
    run = progress.run
    props = run.props
    if props.backend == "batch":
        progress.known["RolloutJobId"] = _ensure_batch(clients, retry, progress)
        return
    arns = (
        []
        if progress.plan is not None  # starting now: the tokens dedupe
        else robomaker_backend.find_batches(clients.robomaker, retry, run.run_id, [])
    )
    if len(arns) < math.ceil(props.rollout_count / robomaker_backend.MAX_JOBS_PER_BATCH):
        # Missing chunks (or finished ones, which the token returns as they are): start them.
        # The attempt is recorded first: a Delete soon after, while ListSimulationJobBatches
        # lags, watches for the batches.
        requests = _plan(clients, retry, progress).robomaker_requests
        _check_not_stopped(clients, retry, run)
        record = _read_record(clients, retry, run)
        if not record.document.get("rolloutsAttemptAt"):
            record = _claim(clients, retry, run, record, "rolloutsAttemptAt")
        arns = robomaker_backend.ensure_started(clients.robomaker, retry, requests)
        progress.started = True
        progress.known["SimulationJobBatchArns"] = arns
        if record.document.get("simulationJobBatchArns") != arns:
            _update_record(clients, retry, run, record, {"simulationJobBatchArns": arns})
        _check_not_stopped(clients, retry, run)
    progress.known["SimulationJobBatchArns"] = arns


def _waited_seconds(job: Mapping[str, Any]) -> float | None:
    created = job.get("CreationTime")
    return common.wall_clock() - created.timestamp() if isinstance(created, datetime) else None


def _check(
    clients: Clients, retry: Retrier, progress: Progress, job: Mapping[str, Any]
) -> dict[str, Any]:
    run = progress.run
    props = run.props
    trainer_status = str(job.get("TrainingJobStatus"))
    if trainer_status != trainer.ACTIVE:
        reason = job.get("FailureReason") or job.get("SecondaryStatus") or "no reason given"
        raise StartError(f"training job {run.training_job_name} is {trainer_status}: {reason}")
    trainer_ready = props.wait_for == "ACCEPTED" or job.get("SecondaryStatus") == "Training"

    rollout_ids = progress.known
    job_arns: tuple[str, ...] = ()
    if props.backend == "batch":
        rollouts = batch_backend.status(
            clients.batch, retry, str(rollout_ids["RolloutJobId"]), props.rollout_count
        )
        accepted, running, failure = rollouts.accepted, rollouts.running, rollouts.failure
    else:
        arns = list(rollout_ids.get("SimulationJobBatchArns") or [])
        rm = robomaker_backend.status(clients.robomaker, retry, arns, props.rollout_count)
        accepted, running, failure, job_arns = rm.accepted, rm.running, rm.failure, rm.job_arns
    if failure:
        raise StartError(failure)
    rollouts_ready = accepted and (props.wait_for == "ACCEPTED" or running >= props.rollout_count)
    if not (trainer_ready and rollouts_ready):
        waited = (
            common.wall_clock() - progress.planned_at
            if progress.planned_at is not None
            else _waited_seconds(job)
        )
        if waited is not None and waited > WAIT_LIMIT_SECONDS:
            raise StartError(
                f"not {props.wait_for} after {waited / 60:.0f} min (limit "
                f"{WAIT_LIMIT_SECONDS / 60:.0f} min): trainer {job.get('SecondaryStatus')}, "
                f"rollouts accepted={accepted} running={running}/{props.rollout_count}"
            )
        LOG.info(
            "waiting: trainer %s/%s, rollouts accepted=%s running=%d/%d",
            trainer_status,
            job.get("SecondaryStatus"),
            accepted,
            running,
            props.rollout_count,
        )
        return {"IsComplete": False}

    data = _data(run, str(job["TrainingJobArn"]), rollout_ids)
    # A healthy run is never torn down for its bookkeeping: a failure below is "poll again".
    try:
        shared_yaml = progress.shared_yaml
        if shared_yaml is None:  # an event from before SharedYaml existed
            shared_yaml = _plan(clients, retry, progress).rendered.shared_yaml
        model = (
            progress.plan.pretrained
            if progress.plan is not None
            else pretrained.resolve(
                clients.s3,
                retry,
                props.trainer,
                this_run=run.run_id,
                pinned=progress.pretrained_prefix,
            )
        )
        manifest = _run_manifest(
            run, data, rollout_ids, job_arns, shared_yaml, pretrained_model=model
        )
        manifest["propertiesHash"] = progress.properties_hash
        files.write_json(clients.s3, retry, props.bucket, run.manifest_key, manifest)
    except ThrottledTooLongError:
        raise
    except Exception as error:
        if isinstance(error, ClientError) and not (is_transient(error) or is_throttle(error)):
            # Refused for good: the run is accepted, so it succeeds; Update and Delete still
            # find its jobs by name (README, "The fan-out").
            LOG.warning("run %s is up but run.json cannot be written: %s", run.run_id, error)
            return {"IsComplete": True, "Data": data}
        raise PollAgainError(
            f"run {run.run_id} is up but run.json was not written: {error}"
        ) from error
    return {"IsComplete": True, "Data": data}
