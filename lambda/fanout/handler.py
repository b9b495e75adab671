"""CDK Provider framework entry points of the experiment's ``Custom::RolloutsRun``.

``on_event`` writes the experiment's files and starts the trainer and the rollouts; ``is_complete``
polls until they are accepted (or running) and then records the run in ``<Prefix>/run.json``.
Semantics: README.md ("The fan-out"). Contract with the CDK side: docs/fanout-contract.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from . import batch_backend, files, robomaker_backend, trainer
from .clients import Clients, get_clients
from .errors import FanoutError, PropertyError, StartError, StopError
from .naming import Place, is_run_id, run_id
from .plan import RolloutPlan, Run
from .props import RunProps, parse_properties
from .retry import Retrier, ThrottledTooLongError, error_code, error_message, is_throttle

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

ON_EVENT_BUDGET_SECONDS = 600.0  # how long on_event keeps retrying a throttled call
IS_COMPLETE_BUDGET_SECONDS = 20.0  # is_complete is polled again anyway: give up early
LAMBDA_SAFETY_SECONDS = 60.0  # leave time to clean up and report before the Lambda times out


def make_retrier(budget_seconds: float) -> Retrier:
    """Replaced by tests and the bench to inject sleep/clock."""
    return Retrier(budget_seconds=budget_seconds)


def _budget(context: Any, cap: float) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return cap
    return max(1.0, min(cap, remaining() / 1000.0 - LAMBDA_SAFETY_SECONDS))


def _describe_error(error: BaseException) -> str:
    if isinstance(error, FanoutError):
        return str(error)
    if isinstance(error, ClientError):
        op = getattr(error, "operation_name", "call")
        return f"{op} failed: {error_code(error)}: {error_message(error)}"
    return f"{type(error).__name__}: {error}"


def _guard(
    entry: Callable[[Mapping[str, Any], Any], dict[str, Any]],
) -> Callable[..., dict[str, Any]]:
    """Report every failure as one clear line (the CloudFormation reason), traceback to the log."""

    def wrapper(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        LOG.info(
            "%s %s %s", entry.__name__, event.get("RequestType"), event.get("PhysicalResourceId")
        )
        try:
            return entry(event, context)
        except FanoutError as error:
            LOG.error("%s failed: %s", entry.__name__, error)
            raise
        except (ClientError, BotoCoreError, KeyError, ValueError, TypeError) as error:
            LOG.exception("%s failed", entry.__name__)
            raise FanoutError(_describe_error(error)) from None

    wrapper.__name__ = entry.__name__
    wrapper.__doc__ = entry.__doc__
    return wrapper


# ---------------------------------------------------------------- on_event


def _on_event(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Create / Update / Delete of the run (see README.md, "The fan-out")."""
    request = event.get("RequestType")
    if request == "Create":
        return _create(event, context)
    if request == "Update":
        return _update(event, context)
    if request == "Delete":
        return _delete(event, context)
    raise FanoutError(f"RequestType is {request!r}; allowed: Create | Update | Delete")


def _new_run(event: Mapping[str, Any], props: RunProps) -> Run:
    place = Place.from_stack_id(event.get("StackId"))
    rid = run_id(
        props.experiment,
        str(event["StackId"]),
        str(event.get("LogicalResourceId", "")),
        str(event.get("RequestId", "")),
    )
    return Run(run_id=rid, props=props, place=place)


def _create(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    props = parse_properties(event.get("ResourceProperties"))  # bad input: nothing starts
    run = _new_run(event, props)
    return _start(get_clients(), make_retrier(_budget(context, ON_EVENT_BUDGET_SECONDS)), run)


def _comparable(raw: Any) -> Any:
    # A new ServiceToken (the provider was replaced) is not a change of the run.
    return (
        {k: v for k, v in raw.items() if k != "ServiceToken"} if isinstance(raw, Mapping) else raw
    )


def _update(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    props = parse_properties(event.get("ResourceProperties"))  # bad input: nothing changes
    old_id = str(event.get("PhysicalResourceId", ""))
    clients = get_clients()
    retry = make_retrier(_budget(context, ON_EVENT_BUDGET_SECONDS))
    if _comparable(event.get("ResourceProperties")) == _comparable(
        event.get("OldResourceProperties")
    ):
        # Same run: no job is touched. Data is re-read so GetAtt keeps resolving.
        return {
            "PhysicalResourceId": old_id,
            "Data": _recorded_data(clients, retry, props, old_id),
            "NoOp": True,
        }
    # Both runs would share <Prefix>/model/ and ip/: stop the old one before the new one starts.
    # CloudFormation's later Delete of the old id then finds nothing left to stop.
    report = _stop_run(clients, retry, old_id, event.get("OldResourceProperties"), known={})
    if report.errors:
        raise StopError(f"could not stop the previous run {old_id}: {'; '.join(report.errors)}")
    return _start(clients, retry, _new_run(event, props))


def _recorded_data(clients: Clients, retry: Retrier, props: RunProps, rid: str) -> dict[str, Any]:
    manifest = None
    if is_run_id(rid):
        try:
            manifest = files.read_json(clients.s3, retry, props.bucket, f"{props.prefix}/run.json")
        except (ClientError, ValueError):
            LOG.warning("could not read run.json of %s", rid, exc_info=True)
    if manifest and manifest.get("runId") == rid and isinstance(manifest.get("data"), dict):
        return dict(manifest["data"])
    return {"RunId": rid, "RolloutCount": props.rollout_count}


def _start(clients: Clients, retry: Retrier, run: Run) -> dict[str, Any]:
    props = run.props
    # Plan everything first: an asset or size problem raises before any job starts.
    asset = files.read_asset(
        clients.s3, retry, props.files_bucket, props.files_key, props.rollout_count
    )
    rendered = files.render(
        asset,
        {
            "bucket": props.bucket,
            "prefix": props.prefix,
            "region": run.place.region,
            "account": run.place.account,
            "training_job_arn": run.training_job_arn,
        },
        [props.video_stream(i) for i in range(props.rollout_count)],
    )
    hyper = trainer.hyperparameters(
        props,
        run.place.region,
        asset.model_metadata_key,
        asset.reward_function_key,
        rendered.hyperparameters,
    )
    training_request = trainer.training_job_request(props, run.training_job_name, run.tags, hyper)
    plan = RolloutPlan(
        run=run, yaml_keys=rendered.worker_yaml_keys, model_metadata_key=asset.model_metadata_key
    )
    batch_request = batch_backend.submit_request(plan) if props.backend == "batch" else None
    robomaker_requests = (
        robomaker_backend.batch_requests(plan) if props.backend == "robomaker" else []
    )

    existing = trainer.describe(clients.sagemaker, retry, run.training_job_name)
    if existing is not None:
        trainer.check_ours(existing, props)  # not ours: refuse before touching anything
    state: dict[str, Any] = {"SharedYaml": rendered.shared_yaml}
    try:
        if existing is None:
            files.write_files(clients.s3, retry, props.bucket, props.prefix, rendered)
            files.clear_handshake_markers(clients.s3, retry, props.bucket, props.prefix)
            state["TrainingJobArn"] = trainer.create(clients.sagemaker, retry, training_request)
        else:
            # A duplicate delivery: files and ip/ were prepared before this trainer started,
            # and clearing ip/ now could hide a live trainer's address from its rollouts.
            LOG.info("training job %s exists: duplicate delivery", run.training_job_name)
            state["TrainingJobArn"] = str(existing["TrainingJobArn"])
        if batch_request is not None:
            job_id, submitted = batch_backend.ensure_started(clients.batch, retry, batch_request)
            state["RolloutJobId"] = job_id
            LOG.info("batch job %s %s", job_id, "submitted" if submitted else "already existed")
        else:
            state["SimulationJobBatchArns"] = robomaker_backend.ensure_started(
                clients.robomaker, retry, robomaker_requests
            )
    except Exception as error:
        LOG.exception("run %s failed to start", run.run_id)
        raise _failed_start(clients, retry, run, _describe_error(error), state) from None
    return {"PhysicalResourceId": run.run_id, "RunState": state}


def _failed_start(
    clients: Clients, retry: Retrier, run: Run, reason: str, state: Mapping[str, Any]
) -> StartError:
    report = _stop_run(clients, retry, run.run_id, run.props, known=state)
    message = f"run {run.run_id} failed to start: {reason}; stopped: {report.summary()}"
    if report.errors:
        message += f"; could NOT stop: {'; '.join(report.errors)}"
    return StartError(message)


# ---------------------------------------------------------------- stopping


@dataclass
class StopReport:
    trainer: str = "not checked"
    rollouts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"trainer {self.trainer}, {len(self.rollouts)} rollout job(s)"


def _stop_run(
    clients: Clients, retry: Retrier, rid: str, props: RunProps | Any, known: Mapping[str, Any]
) -> StopReport:
    """Stop the trainer and rollouts of run ``rid``, found by name/token/tag. Never raises: the
    report lists what could not be stopped so every part is attempted."""
    report = StopReport()
    if not is_run_id(rid):
        report.trainer = "absent"
        return report
    backend, queue = _stop_targets(props)
    try:
        if backend == "batch":
            if queue is None:
                report.errors.append("Batch.JobQueueArn is unknown, cannot find the rollouts")
            else:
                report.rollouts = batch_backend.stop(clients.batch, retry, queue, rid)
        elif backend == "robomaker":
            known_arns = list(known.get("SimulationJobBatchArns") or [])
            report.rollouts = robomaker_backend.stop(clients.robomaker, retry, rid, known_arns)
        else:
            report.errors.append(f"Backend {backend!r} is unknown, cannot find the rollouts")
    except (ClientError, BotoCoreError, FanoutError) as error:
        report.errors.append(f"rollouts: {_describe_error(error)}")
    try:
        report.trainer = trainer.stop(clients.sagemaker, retry, rid)
    except (ClientError, BotoCoreError, FanoutError) as error:
        report.errors.append(f"trainer: {_describe_error(error)}")
    LOG.info("stop %s: %s errors=%s", rid, report.summary(), report.errors)
    return report


def _stop_targets(props: RunProps | Any) -> tuple[str | None, str | None]:
    """Backend and queue, also from properties that no longer validate (Delete must still work)."""
    if isinstance(props, RunProps):
        return props.backend, props.batch.job_queue_arn if props.batch else None
    raw = props if isinstance(props, Mapping) else {}
    batch = raw.get("Batch") if isinstance(raw.get("Batch"), Mapping) else {}
    queue = batch.get("JobQueueArn") if batch else None
    backend = raw.get("Backend")
    return (backend if isinstance(backend, str) else None), (
        queue if isinstance(queue, str) else None
    )


def _delete(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    rid = str(event.get("PhysicalResourceId", ""))
    raw = event.get("ResourceProperties")
    try:
        props: RunProps | Any = parse_properties(raw)
    except PropertyError as error:
        LOG.warning("deleting %s with properties that no longer validate: %s", rid, error)
        props = raw
    retry = make_retrier(_budget(context, ON_EVENT_BUDGET_SECONDS))
    report = _stop_run(get_clients(), retry, rid, props, known={})
    if report.errors:
        raise StopError(f"could not stop run {rid}: {'; '.join(report.errors)}")
    return {"PhysicalResourceId": rid}


# ---------------------------------------------------------------- is_complete


def _is_complete(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Poll until the trainer is InProgress and every rollout is accepted (or running)."""
    if event.get("RequestType") == "Delete" or event.get("NoOp"):
        return {"IsComplete": True}
    props = parse_properties(event.get("ResourceProperties"))
    rid = str(event["PhysicalResourceId"])
    run = Run(run_id=rid, props=props, place=Place.from_stack_id(event.get("StackId")))
    state: Mapping[str, Any] = event.get("RunState") or {}
    clients = get_clients()
    retry = make_retrier(_budget(context, IS_COMPLETE_BUDGET_SECONDS))
    try:
        return _check(clients, retry, run, state)
    except ThrottledTooLongError:
        return {"IsComplete": False}  # throttling alone never fails the deploy: poll again
    except ClientError as error:
        if is_throttle(error):
            return {"IsComplete": False}
        raise


def _check(clients: Clients, retry: Retrier, run: Run, state: Mapping[str, Any]) -> dict[str, Any]:
    props = run.props
    job = trainer.describe(clients.sagemaker, retry, run.training_job_name)
    if job is None:
        raise _failed_start(
            clients, retry, run, f"training job {run.training_job_name} not found", state
        )
    trainer_status = str(job.get("TrainingJobStatus"))
    if trainer_status != trainer.ACTIVE:
        reason = job.get("FailureReason") or job.get("SecondaryStatus") or "no reason given"
        raise _failed_start(
            clients,
            retry,
            run,
            f"training job {run.training_job_name} is {trainer_status}: {reason}",
            state,
        )
    trainer_ready = props.wait_for == "ACCEPTED" or job.get("SecondaryStatus") == "Training"

    rollout_ids: dict[str, Any] = {}
    job_arns: tuple[str, ...] = ()
    if props.backend == "batch":
        assert props.batch is not None
        job_id = state.get("RolloutJobId") or _find_batch_job(clients, retry, run)
        rollouts = batch_backend.status(clients.batch, retry, job_id, props.rollout_count)
        rollout_ids["RolloutJobId"] = job_id
        accepted, running, failure = rollouts.accepted, rollouts.running, rollouts.failure
    else:
        arns = list(state.get("SimulationJobBatchArns") or [])
        if not arns:
            arns = robomaker_backend.find_batches(clients.robomaker, retry, run.run_id, [])
        rm = robomaker_backend.status(clients.robomaker, retry, arns, props.rollout_count)
        rollout_ids["SimulationJobBatchArns"] = arns
        accepted, running, failure, job_arns = rm.accepted, rm.running, rm.failure, rm.job_arns
    if failure:
        raise _failed_start(clients, retry, run, failure, state)
    rollouts_ready = accepted and (props.wait_for == "ACCEPTED" or running >= props.rollout_count)
    if not (trainer_ready and rollouts_ready):
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
    files.write_json(
        clients.s3,
        retry,
        props.bucket,
        run.manifest_key,
        _run_manifest(run, data, rollout_ids, job_arns, bool(state.get("SharedYaml", True))),
    )
    return {"IsComplete": True, "Data": data}


def _find_batch_job(clients: Clients, retry: Retrier, run: Run) -> str:
    assert run.props.batch is not None
    jobs = batch_backend.find_jobs(clients.batch, retry, run.props.batch.job_queue_arn, run.run_id)
    if not jobs:
        raise _failed_start(
            clients, retry, run, f"no Batch job named {run.run_id} in the queue", {}
        )
    return str(max(jobs, key=lambda j: j.get("createdAt", 0))["jobId"])


def _data(run: Run, training_job_arn: str, rollout_ids: Mapping[str, Any]) -> dict[str, Any]:
    """The resource's attributes: small and fixed-size whatever N is (response < 4 KB)."""
    data: dict[str, Any] = {
        "RunId": run.run_id,
        "TrainingJobName": run.training_job_name,
        "TrainingJobArn": training_job_arn,
        "RolloutCount": run.props.rollout_count,
        "RunManifestKey": run.manifest_key,
    }
    if "RolloutJobId" in rollout_ids:
        data["RolloutJobId"] = rollout_ids["RolloutJobId"]
    else:
        arns = rollout_ids.get("SimulationJobBatchArns") or []
        data["SimulationJobBatchArn"] = arns[0] if arns else ""
        data["SimulationJobBatchCount"] = len(arns)
    return data


def _run_manifest(
    run: Run,
    data: Mapping[str, Any],
    rollout_ids: Mapping[str, Any],
    job_arns: tuple[str, ...],
    shared_yaml: bool,
) -> dict[str, Any]:
    props = run.props
    job_id = rollout_ids.get("RolloutJobId")
    workers = []
    for i in range(props.rollout_count):
        worker: dict[str, Any] = {
            "index": i,
            "world": props.worlds[i],
            "videoStream": props.video_stream(i),
            "yamlKey": files.SHARED_PARAMS if shared_yaml else f"training_params_{i}.yaml",
        }
        if job_id:
            # Children of an array job are "<parent id>:<index>".
            worker["batchJobId"] = job_id if props.rollout_count == 1 else f"{job_id}:{i}"
        workers.append(worker)
    return {
        "runId": run.run_id,
        "experiment": props.experiment,
        "backend": props.backend,
        "bucket": props.bucket,
        "prefix": props.prefix,
        "waitFor": props.wait_for,
        "trainingJob": {"name": run.training_job_name, "arn": data["TrainingJobArn"]},
        "rolloutJobId": job_id,
        "simulationJobBatchArns": list(rollout_ids.get("SimulationJobBatchArns") or []),
        "simulationJobArns": list(job_arns),
        "tags": run.tags,
        "workers": workers,
        "data": dict(data),
        "recordedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


on_event = _guard(_on_event)
is_complete = _guard(_is_complete)
