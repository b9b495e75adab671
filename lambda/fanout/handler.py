"""CDK Provider framework entry points of the experiment's ``Custom::RolloutsRun``.

``on_event`` starts nothing: for Create/Update it validates the properties, reads the files asset
and plans every request (whatever can fail deterministically fails here, so a bad deploy changes
nothing), then returns the new run id and ``PlannedAt``. ``is_complete`` does the work: on its
first call(s) it plans again, stops the previous run(s) (Update; ``unstoppedRuns`` in run.json),
writes the files, clears ``ip/``, starts the trainer and the rollouts (idempotently: by name,
token, or the Batch start marker; never a resubmit right after an unknown SubmitJob outcome), then
polls until they are accepted (or running) and records the run in ``<Prefix>/run.json``. If
anything fails there, it stops what this run started and fails with one reason; the Delete that
CloudFormation may send for that run id afterwards is harmless.
Semantics: README.md ("The fan-out"). Contract with the CDK side: docs/fanout-contract.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from botocore.parsers import ResponseParserError

from . import batch_backend, files, pretrained, robomaker_backend, start_plan, trainer
from .clients import Clients, get_clients
from .errors import (
    MAX_REASON,
    FanoutError,
    PollAgainError,
    PropertyError,
    StartError,
    StopError,
    clip,
)
from .naming import Place, is_run_id, run_id
from .plan import Run
from .props import RunProps, parse_properties
from .retry import (
    Retrier,
    ThrottledTooLongError,
    error_code,
    error_message,
    is_throttle,
    is_transient,
)
from .start_plan import StartPlan

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

# Lambda timeouts the CDK side sets (used when no Lambda context is given, e.g. in tests).
ON_EVENT_TIMEOUT_SECONDS = 120.0
IS_COMPLETE_TIMEOUT_SECONDS = 300.0
# Every invocation has ONE deadline for its work = its remaining time minus a reserve. The reserve
# of is_complete pays for stopping the run after a failure; the last seconds report the result.
ON_EVENT_RESERVE_SECONDS = 15.0
IS_COMPLETE_RESERVE_SECONDS = 90.0
REPORT_MARGIN_SECONDS = 10.0
# A run that is not ACCEPTED/RUNNING this long after on_event planned it (PlannedAt) is stopped
# and fails, before the Provider's total timeout (45 min) could fail it without stopping anything.
WAIT_LIMIT_SECONDS = 38 * 60.0
# Reasons are clipped so that the summary of what was stopped always fits.
REASON_PART = 500
# Batch: after a SubmitJob whose outcome is unknown (5xx, timeout, lost response, killed Lambda),
# ListJobs (eventually consistent) must have had this long to show the job before a resubmit.
SUBMIT_SETTLE_SECONDS = 120.0


def make_retrier(budget_seconds: float) -> Retrier:
    """A Retrier whose deadline is ``budget_seconds`` from now. Replaced by tests and the bench to
    inject sleep/clock."""
    return Retrier(budget_seconds=budget_seconds)


def wall_clock() -> float:
    """Seconds since the epoch (replaced by tests)."""
    return time.time()


@dataclass
class Budget:
    """One invocation's retriers: ``work`` stops early enough to leave ``cleanup`` its reserve."""

    work: Retrier
    cleanup: Retrier


def _budget(context: Any, timeout: float, reserve: float) -> Budget:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    remaining = remaining_ms() / 1000.0 if callable(remaining_ms) else timeout
    return Budget(
        work=make_retrier(max(1.0, remaining - reserve)),
        cleanup=make_retrier(max(1.0, remaining - REPORT_MARGIN_SECONDS)),
    )


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
        except Exception as error:  # any type (zlib.error, ...): one clipped line
            LOG.exception("%s failed", entry.__name__)
            raise FanoutError(_describe_error(error)) from None

    wrapper.__name__ = entry.__name__
    wrapper.__doc__ = entry.__doc__
    return wrapper


def properties_hash(raw: Any) -> str:
    """Fingerprint of the properties a run was started with (ServiceToken excluded)."""
    text = json.dumps(_comparable(raw), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _comparable(raw: Any) -> Any:
    # A new ServiceToken (the provider was replaced) is not a change of the run.
    return (
        {k: v for k, v in raw.items() if k != "ServiceToken"} if isinstance(raw, Mapping) else raw
    )


# ---------------------------------------------------------------- planning


def _plan_start(
    clients: Clients, retry: Retrier, run: Run, pinned_pretrained: str | None = None
) -> StartPlan:
    """Read the asset, find the pretrained model, render the files and build every request.
    Raises on any deterministic problem (asset, placeholders, pretrained model, Batch payload
    quota) and starts nothing."""
    props = run.props
    asset = files.read_asset(
        clients.s3, retry, props.files_bucket, props.files_key, props.rollout_count
    )
    model = pretrained.resolve(
        clients.s3, retry, props.trainer, this_run=run.run_id, pinned=pinned_pretrained
    )
    return start_plan.plan_start(asset, run, model)


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


def _planned(run: Run, plan: StartPlan) -> dict[str, Any]:
    """on_event's result for a run to start; its keys flow into every is_complete event."""
    result: dict[str, Any] = {
        "PhysicalResourceId": run.run_id,
        "PlannedAt": int(wall_clock()),  # the wait limit counts from here
        "SharedYaml": plan.rendered.shared_yaml,  # run.json needs it; no asset re-read
    }
    if plan.pretrained is not None:
        # "latest" is resolved once: every is_complete starts from the same model.
        result["PretrainedPrefix"] = plan.pretrained.prefix
    return result


def _create(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    props = parse_properties(event.get("ResourceProperties"))  # bad input: nothing starts
    run = _new_run(event, props)
    budget = _budget(context, ON_EVENT_TIMEOUT_SECONDS, ON_EVENT_RESERVE_SECONDS)
    plan = _plan_start(get_clients(), budget.work, run)  # bad asset or payload: nothing starts
    return _planned(run, plan)


def _update(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    raw = event.get("ResourceProperties")
    props = parse_properties(raw)  # bad input: nothing changes
    old_id = str(event.get("PhysicalResourceId", ""))
    clients = get_clients()
    retry = _budget(context, ON_EVENT_TIMEOUT_SECONDS, ON_EVENT_RESERVE_SECONDS).work
    if _comparable(raw) == _comparable(event.get("OldResourceProperties")):
        # Same run: no job is touched. Data is re-read so GetAtt keeps resolving.
        return _no_op(old_id, _recorded_data(clients, retry, props, old_id))
    current = _current_run_data(clients, retry, props, raw, old_id)
    if current is not None:
        # The run `old_id` was started with exactly these properties and nothing replaced it:
        # the rollback of an update that failed before it changed anything.
        LOG.info("run %s already runs these properties: no-op", old_id)
        return _no_op(old_id, current)
    old_raw = event.get("OldResourceProperties")
    old_backend = old_raw.get("Backend") if isinstance(old_raw, Mapping) else None
    if old_backend is not None and old_backend != props.backend:
        # The Lambda role holds only the current backend's permissions: it could not stop the
        # old run's rollouts.
        raise PropertyError(
            f"Backend changed from {old_backend!r} to {props.backend!r}; destroy the experiment "
            "stack and deploy it again to change the rollout backend"
        )
    run = _new_run(event, props)
    plan = _plan_start(clients, retry, run)  # bad asset or payload: the old run keeps running
    result: dict[str, Any] = _planned(run, plan)
    if old_id != run.run_id:
        # is_complete stops it before the new run starts: both share <Prefix>/model/ and ip/.
        result["PreviousRunId"] = old_id
    return result


def _no_op(rid: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"PhysicalResourceId": rid, "Data": data, "NoOp": True}


def _read_manifest(
    clients: Clients, retry: Retrier, props: RunProps, rid: str
) -> dict[str, Any] | None:
    """``run.json`` when it records run ``rid``, else None."""
    if not is_run_id(rid):
        return None
    try:
        manifest = files.read_json(clients.s3, retry, props.bucket, f"{props.prefix}/run.json")
    except (ClientError, ValueError):
        LOG.warning("could not read run.json of %s", rid, exc_info=True)
        return None
    return manifest if manifest and manifest.get("runId") == rid else None


# The resource's attributes (see _data) and how long each may be when copied from run.json: a
# record that was altered must not push the response past CloudFormation's 4 KB.
DATA_KEYS = {
    "RunId": 64,
    "TrainingJobName": 64,
    "TrainingJobArn": 256,
    "RolloutCount": 8,
    "RunManifestKey": 512,
    "RolloutJobId": 128,
    "SimulationJobBatchArn": 512,
    "SimulationJobBatchCount": 8,
}


def _recorded(data: Mapping[str, Any], rid: str) -> dict[str, Any] | None:
    """The attributes run.json recorded for run ``rid``: known keys with scalar values of a
    bounded size only; None when the record does not name this run."""
    if data.get("RunId") != rid:
        return None
    kept: dict[str, Any] = {}
    for key, limit in DATA_KEYS.items():
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue
        if len(str(value)) <= limit:
            kept[key] = value
    return kept


def _recorded_data(clients: Clients, retry: Retrier, props: RunProps, rid: str) -> dict[str, Any]:
    manifest = _read_manifest(clients, retry, props, rid)
    if manifest and isinstance(manifest.get("data"), dict):
        recorded = _recorded(manifest["data"], rid)
        if recorded is not None:
            return recorded
    return {"RunId": rid, "RolloutCount": props.rollout_count}


def _current_run_data(
    clients: Clients, retry: Retrier, props: RunProps, raw: Any, rid: str
) -> dict[str, Any] | None:
    manifest = _read_manifest(clients, retry, props, rid)
    if (
        manifest
        and manifest.get("propertiesHash") == properties_hash(raw)
        and not manifest.get("supersededBy")
        and isinstance(manifest.get("data"), dict)
    ):
        return _recorded(manifest["data"], rid)
    return None


def _stop_entry(rid: str, props: RunProps | Any) -> dict[str, Any]:
    """What Delete-like stopping of run ``rid`` needs, as recorded in run.json."""
    backend, queue = _stop_targets(props)
    place = _data_place(props)
    return {
        "runId": rid,
        "backend": backend,
        "jobQueue": queue,
        "bucket": place[0] if place else None,
        "prefix": place[1] if place else None,
    }


def _entry_props(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Raw properties that _stop_run understands, from a run.json stop entry."""
    raw: dict[str, Any] = {"Backend": entry.get("backend")}
    if entry.get("bucket") and entry.get("prefix"):
        raw.update(Bucket=entry["bucket"], Prefix=entry["prefix"])
    if entry.get("jobQueue"):
        raw["Batch"] = {"JobQueueArn": entry["jobQueue"]}
    return raw


def _own_entry(entry: Mapping[str, Any], props: RunProps) -> dict[str, Any] | None:
    """A stop entry read from run.json, as this experiment's: its run id must be one of this
    experiment's, and the backend, queue, bucket and prefix are this stack's own whatever the
    record says, so an altered record can neither stop another experiment's jobs nor make a
    Delete fail on someone else's."""
    rid = entry.get("runId")
    if not is_run_id(rid) or not str(rid).startswith(f"{props.experiment}-"):
        LOG.warning("run.json names %r, not a run of %s: ignored", rid, props.experiment)
        return None
    return _stop_entry(str(rid), props)


def _stop_previous_runs(
    clients: Clients, retry: Retrier, props: RunProps, *, previous: str, old_props: Any, new_id: str
) -> None:
    """Stop every earlier run that may still run before run ``new_id`` starts.

    That is the run the update replaces (``previous``, with the old properties), the run run.json
    records if it is not ``new_id`` and was not superseded yet, and every run run.json lists in
    ``unstoppedRuns`` (superseded but never confirmed stopped, e.g. after a failed update whose
    rollback names the FAILED new id). The list is written before stopping and shrinks to what
    could not be stopped, so a later attempt, or the rollback, stops them too. run.json read
    errors are fatal here, before anything is stopped.
    """
    key = f"{props.prefix}/run.json"
    manifest = files.read_json(clients.s3, retry, props.bucket, key)  # errors: nothing stopped
    document: dict[str, Any] = dict(manifest or {})
    pending: list[dict[str, Any]] = [
        own
        for e in document.get("unstoppedRuns") or []
        if isinstance(e, Mapping) and (own := _own_entry(e, props)) is not None
    ]
    recorded = document.get("runId")
    if is_run_id(recorded) and recorded != new_id and not document.get("supersededBy"):
        own = _own_entry({"runId": recorded}, props)
        if own is not None:
            pending.append(own)
        document["supersededBy"] = new_id
    if is_run_id(previous) and previous != new_id:
        pending = [e for e in pending if e.get("runId") != previous]
        pending.insert(0, _stop_entry(previous, old_props if old_props else props))
    pending = [e for e in pending if is_run_id(e.get("runId")) and e.get("runId") != new_id]
    if not pending and document.get("unstoppedRuns") in (None, []):
        return
    document["unstoppedRuns"] = pending
    files.write_json(clients.s3, retry, props.bucket, key, document)

    remaining: list[dict[str, Any]] = []
    errors: list[str] = []
    throttled = False
    for entry in pending:
        rid = str(entry["runId"])
        entry_props: Any = (old_props or props) if rid == previous else _entry_props(entry)
        report = _stop_run(clients, retry, rid, entry_props)
        if report.errors:
            remaining.append(entry)
            errors.append(f"{rid}: {'; '.join(report.errors)}")
            throttled |= report.throttled
    if remaining != pending:
        try:
            files.write_json(
                clients.s3, retry, props.bucket, key, {**document, "unstoppedRuns": remaining}
            )
        except Exception:  # conservative: the list still names them, stopping again is harmless
            LOG.warning("could not record the stopped runs in %s", key, exc_info=True)
    if throttled:  # not a failure: the next call stops the rest
        raise ThrottledTooLongError(f"stopping the previous run(s) was throttled: {errors}")
    if errors:
        raise StopError(f"could not stop the previous run {'; '.join(errors)}")


# ---------------------------------------------------------------- stopping


@dataclass
class StopReport:
    trainer: str = "not checked"
    rollouts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    throttled: bool = False  # some part was still throttled when the deadline came

    def summary(self) -> str:
        return f"trainer {self.trainer}, {len(self.rollouts)} rollout job(s)"


def _stop_run(
    clients: Clients,
    retry: Retrier,
    rid: str,
    props: RunProps | Any,
    known: Mapping[str, Any] | None = None,
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
            known_ids = (
                [str((known or {})["RolloutJobId"])] if (known or {}).get("RolloutJobId") else []
            )
            if known_ids:  # stopped by id first: ListJobs may not show it yet, or be refused
                report.rollouts = batch_backend.stop_ids(
                    clients.batch, retry, known_ids, job_name=rid, queue=queue
                )
            if queue is None:
                if not known_ids:
                    report.errors.append("Batch.JobQueueArn is unknown, cannot find the rollouts")
            else:
                report.rollouts += batch_backend.stop(
                    clients.batch, retry, queue, rid, skip=tuple(known_ids)
                )
        elif backend == "robomaker":
            known_arns = list((known or {}).get("SimulationJobBatchArns") or [])
            report.rollouts = robomaker_backend.stop(clients.robomaker, retry, rid, known_arns)
        else:
            report.errors.append(f"Backend {backend!r} is unknown, cannot find the rollouts")
    except (ClientError, BotoCoreError, FanoutError) as error:
        report.throttled |= isinstance(error, ThrottledTooLongError)
        report.errors.append(f"rollouts: {clip(_describe_error(error), 300)}")
    try:
        report.trainer = trainer.stop(clients.sagemaker, retry, rid, _data_place(props))
    except (ClientError, BotoCoreError, FanoutError) as error:
        report.throttled |= isinstance(error, ThrottledTooLongError)
        report.errors.append(f"trainer: {clip(_describe_error(error), 300)}")
    LOG.info("stop %s: %s errors=%s", rid, report.summary(), report.errors)
    return report


def _raw_text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) and value else None


def _stop_targets(props: RunProps | Any) -> tuple[str | None, str | None]:
    """Backend and queue, also from properties that no longer validate (Delete must still work)."""
    if isinstance(props, RunProps):
        return props.backend, props.batch.job_queue_arn if props.batch else None
    raw = props if isinstance(props, Mapping) else {}
    batch = raw.get("Batch") if isinstance(raw.get("Batch"), Mapping) else {}
    return _raw_text(raw, "Backend"), _raw_text(batch or {}, "JobQueueArn")


def _data_place(props: RunProps | Any) -> tuple[str, str] | None:
    """(Bucket, Prefix) of the run's data: a trainer of our name training other data is not ours.
    None when the properties do not say (the trainer is then found by name alone)."""
    if isinstance(props, RunProps):
        return props.bucket, props.prefix
    raw = props if isinstance(props, Mapping) else {}
    bucket, prefix = _raw_text(raw, "Bucket"), _raw_text(raw, "Prefix")
    return (bucket, prefix) if bucket and prefix else None


def _delete(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    rid = str(event.get("PhysicalResourceId", ""))
    raw = event.get("ResourceProperties")
    try:
        props: RunProps | Any = parse_properties(raw)
    except PropertyError as error:
        LOG.warning("deleting %s with properties that no longer validate: %s", rid, error)
        props = raw
    retry = _budget(context, ON_EVENT_TIMEOUT_SECONDS, REPORT_MARGIN_SECONDS).work
    return _delete_step(get_clients(), retry, rid, props, on_event=True)


def _delete_step(
    clients: Clients, retry: Retrier, rid: str, props: RunProps | Any, *, on_event: bool
) -> dict[str, Any]:
    """Stop run ``rid``. Throttled past the deadline is no failure: on_event hands the rest to
    is_complete (``StopPending``), which returns IsComplete False until everything is stopped."""
    known = _read_marker(clients, retry, props, rid, quiet=True) if is_run_id(rid) else {}
    report = _stop_run(clients, retry, rid, props, {"RolloutJobId": known.get("batchJobId")})
    for entry in _unstopped_runs_of(clients, retry, rid, props):
        # Earlier runs an update could not stop (listed in run.json): the experiment goes away,
        # so they must go too.
        earlier = _stop_run(clients, retry, str(entry["runId"]), _entry_props(entry))
        report.errors += [f"{entry['runId']}: {error}" for error in earlier.errors]
        report.throttled |= earlier.throttled
    if report.throttled:
        LOG.warning("stopping %s was throttled; continuing on the next poll", rid)
        return (
            {"PhysicalResourceId": rid, "StopPending": True} if on_event else {"IsComplete": False}
        )
    if report.errors:
        raise StopError(f"could not stop run {rid}: {'; '.join(report.errors)}")
    return {"PhysicalResourceId": rid} if on_event else {"IsComplete": True}


def _unstopped_runs_of(
    clients: Clients, retry: Retrier, rid: str, props: RunProps | Any
) -> list[dict[str, Any]]:
    """``unstoppedRuns`` of run.json (best effort: [] on errors). They are runs an update meant
    to stop and could not; deleting any run of the experiment is the last chance to stop them."""
    if not isinstance(props, RunProps) or not is_run_id(rid):
        return []
    try:
        document = files.read_json(clients.s3, retry, props.bucket, f"{props.prefix}/run.json")
    except Exception:
        LOG.warning("could not read run.json while deleting %s", rid, exc_info=True)
        return []
    if not document:
        return []
    return [
        own
        for e in document.get("unstoppedRuns") or []
        if isinstance(e, Mapping)
        and e.get("runId") != rid
        and (own := _own_entry(e, props)) is not None
    ]


# ---------------------------------------------------------------- is_complete


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
        return {"IsComplete": True}
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
    )
    try:
        _check_wait_limit(progress)  # first: also when every call below would be throttled
        return _advance(clients, budget.work, progress, event.get("OldResourceProperties"))
    except ThrottledTooLongError as error:
        LOG.warning("throttled until the deadline, polling again: %s", error)
        return {"IsComplete": False}  # throttling alone never fails the deploy
    except PollAgainError as error:
        LOG.warning("polling again: %s", error)
        return {"IsComplete": False}
    except Exception as error:  # whatever it was: stop this run and say why
        if isinstance(error, ClientError) and is_throttle(error):
            return {"IsComplete": False}
        LOG.exception("run %s failed", rid)
        raise _failed_run(clients, budget.cleanup, progress, _describe_error(error)) from None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass
class Progress:
    """What one is_complete invocation learnt about its run (for the cleanup after a failure)."""

    run: Run
    previous_run: Any = None
    properties_hash: str = ""
    planned_at: float | None = None  # epoch seconds when on_event planned the run
    shared_yaml: bool | None = None  # from on_event: one shared training_params.yaml
    pretrained_prefix: str | None = None  # from on_event: the pretrained model it resolved
    plan: StartPlan | None = None
    known: dict[str, Any] = field(default_factory=dict)


def _check_wait_limit(progress: Progress) -> None:
    if progress.planned_at is None:
        return  # an event from before PlannedAt existed: _check uses the trainer's CreationTime
    waited = wall_clock() - progress.planned_at
    if waited > WAIT_LIMIT_SECONDS:
        raise StartError(
            f"not {progress.run.props.wait_for} after {waited / 60:.0f} min (limit "
            f"{WAIT_LIMIT_SECONDS / 60:.0f} min, counted from planning)"
        )


def _failed_run(clients: Clients, retry: Retrier, progress: Progress, reason: str) -> StartError:
    run = progress.run
    known = dict(progress.known)
    if run.props.backend == "batch" and not known.get("RolloutJobId"):
        marker = _read_marker(clients, retry, run.props, run.run_id, quiet=True)
        known["RolloutJobId"] = marker.get("batchJobId")
    report = _stop_run(clients, retry, run.run_id, run.props, known)
    return StartError(_failure_reason(run.run_id, reason, report))


def _failure_reason(rid: str, cause: str, report: StopReport) -> str:
    """One line <= MAX_REASON: what was stopped and what could NOT be always fit; the cause gets
    whatever room remains."""
    head = f"run {rid} failed to start: "
    tail = f"; stopped: {report.summary()}"
    if report.errors:
        tail += f"; could NOT stop: {clip('; '.join(report.errors), REASON_PART)}"
    room = max(60, MAX_REASON - len(head) - len(tail))
    return head + clip(cause, room) + tail


def _advance(
    clients: Clients, retry: Retrier, progress: Progress, old_props: Any
) -> dict[str, Any]:
    run = progress.run
    job = trainer.describe(clients.sagemaker, retry, run.training_job_name)
    if job is None:
        _start_trainer(clients, retry, progress, old_props)
        job = trainer.describe(clients.sagemaker, retry, run.training_job_name)
        if job is None:
            raise StartError(f"training job {run.training_job_name} not found after creating it")
    else:
        trainer.check_ours(job, run.props)  # not ours: fail (and the cleanup leaves it alone)
    _ensure_rollouts(clients, retry, progress)
    return _check(clients, retry, progress, job)


def _plan(clients: Clients, retry: Retrier, progress: Progress) -> StartPlan:
    if progress.plan is None:
        progress.plan = _plan_start(clients, retry, progress.run, progress.pretrained_prefix)
    return progress.plan


def _start_trainer(clients: Clients, retry: Retrier, progress: Progress, old_props: Any) -> None:
    """No trainer of this name yet: plan, stop the previous run(s) (Update), write the files,
    clear ip/, create the trainer. Repeating all of it is harmless until the trainer exists."""
    run = progress.run
    props = run.props
    # Plan first: an asset or S3 failure here leaves the old run alone.
    plan = _plan(clients, retry, progress)
    previous = progress.previous_run
    if is_run_id(previous) and previous != run.run_id:
        _stop_previous_runs(
            clients, retry, props, previous=str(previous), old_props=old_props, new_id=run.run_id
        )
    # The run's own prefix: nothing there can come from an earlier run. ip/ is cleared anyway, in
    # case a trainer of this name ever wrote one (it never should).
    files.write_files(clients.s3, retry, props.bucket, run.data_prefix, plan.rendered)
    files.clear_handshake_markers(clients.s3, retry, props.bucket, run.data_prefix)
    arn = trainer.create(clients.sagemaker, retry, plan.training_request)
    LOG.info("training job %s created", arn)


def _marker_key(prefix: str, rid: str) -> str:
    return f"{prefix}/fanout/{rid}.json"


def _read_marker(
    clients: Clients, retry: Retrier, props: RunProps | Any, rid: str, *, quiet: bool = False
) -> dict[str, Any]:
    """The run's start marker (Batch: ``submitAttemptAt``, ``batchJobId``), {} when absent.
    A read error is PollAgainError, or {} when ``quiet`` (cleanup and Delete: best effort)."""
    place = _data_place(props)
    if place is None:
        return {}
    try:
        return files.read_json(clients.s3, retry, place[0], _marker_key(place[1], rid)) or {}
    except Exception as error:
        if quiet:
            LOG.warning("could not read the marker of %s", rid, exc_info=True)
            return {}
        raise PollAgainError(f"could not read the start marker of {rid}: {error}") from error


def _write_marker(clients: Clients, retry: Retrier, run: Run, document: dict[str, Any]) -> None:
    files.write_json(
        clients.s3, retry, run.props.bucket, _marker_key(run.props.prefix, run.run_id), document
    )


def _ensure_batch(clients: Clients, retry: Retrier, progress: Progress) -> str:
    """The run's array job id, submitting it at most once despite ListJobs' eventual consistency.

    1. A job id in the marker is the job (later polls DescribeJobs it by id).
    2. Else ListJobs by name; a hit is recorded in the marker.
    3. Else, if a submit was attempted less than SUBMIT_SETTLE_SECONDS ago (its outcome unknown:
       5xx, timeout, lost response, killed Lambda), poll again later: never resubmit now.
    4. Else record the attempt, then SubmitJob once. A 5xx or timeout is an unknown outcome:
       poll again (step 3 on the next call, >= 30 s later); throttling means "refused".
    """
    run = progress.run
    props = run.props
    assert props.batch is not None
    key = _marker_key(props.prefix, run.run_id)
    try:
        found, etag = files.read_json_versioned(clients.s3, retry, props.bucket, key)
    except Exception as error:
        raise PollAgainError(f"could not read the start marker of {run.run_id}: {error}") from error
    marker = found or {}
    if marker.get("batchJobId"):
        return str(marker["batchJobId"])
    jobs = batch_backend.find_jobs(clients.batch, retry, props.batch.job_queue_arn, run.run_id)
    if jobs:
        job_id = str(max(jobs, key=lambda j: j.get("createdAt", 0))["jobId"])
        _remember_job(clients, retry, run, job_id)
        return job_id
    attempted = marker.get("submitAttemptAt")
    if isinstance(attempted, int | float) and wall_clock() - attempted < SUBMIT_SETTLE_SECONDS:
        raise PollAgainError(
            f"a SubmitJob of {run.run_id} {wall_clock() - attempted:.0f}s ago had an unknown "
            "outcome and ListJobs does not show it yet"
        )
    request = _plan(clients, retry, progress).batch_request
    assert request is not None
    try:
        # A conditional write claims the submit: of two concurrent deliveries of the same
        # request only one gets here with the marker it read still unchanged.
        files.write_json(
            clients.s3,
            retry,
            props.bucket,
            key,
            {"runId": run.run_id, "submitAttemptAt": wall_clock()},
            only_if=etag or "absent",
        )
    except ClientError as error:
        if error_code(error) in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise PollAgainError(
                f"another invocation is submitting the rollouts of {run.run_id}; "
                "checking again on the next poll"
            ) from error
        if not (is_transient(error) or is_throttle(error)):
            # Refused (AccessDenied, a bucket policy, KMS): no later poll can record it either,
            # and the rollouts are never submitted without the record. Fail now, not at the
            # wait limit with a billed trainer running until then.
            raise StartError(
                f"the submit record s3://{props.bucket}/{key} cannot be written "
                f"({_describe_error(error)}); rollouts are never submitted without it"
            ) from error
        raise PollAgainError(
            f"could not record the submit attempt of {run.run_id}: {error}"
        ) from error
    except Exception as error:
        raise PollAgainError(
            f"could not record the submit attempt of {run.run_id}: {error}"
        ) from error
    try:
        job_id = batch_backend.submit(clients.batch, retry, request)
    except ThrottledTooLongError:
        # Refused, nothing started: no need to wait for ListJobs on the next call.
        try:
            _write_marker(clients, retry, run, {"runId": run.run_id})
        except Exception:
            LOG.warning("could not clear the submit attempt of %s", run.run_id, exc_info=True)
        raise
    except Exception as error:
        # A garbled or cut-off answer may follow a request that did start the job: unknown,
        # like a 5xx. A request botocore refused to send (ParamValidationError) started nothing.
        unknown = isinstance(error, ResponseParserError) or (
            isinstance(error, BotoCoreError) and not isinstance(error, ParamValidationError)
        )
        if is_transient(error) or unknown:
            raise PollAgainError(
                f"SubmitJob of {run.run_id} had an unknown outcome "
                f"({_describe_error(error)}); checking again on the next poll"
            ) from error
        raise
    LOG.info("batch job %s submitted", job_id)
    _remember_job(clients, retry, run, job_id)
    return job_id


def _remember_job(clients: Clients, retry: Retrier, run: Run, job_id: str) -> None:
    try:
        _write_marker(clients, retry, run, {"runId": run.run_id, "batchJobId": job_id})
    except Exception:  # the next call finds it by ListJobs (the attempt is recorded)
        LOG.warning("could not record batch job %s of %s", job_id, run.run_id, exc_info=True)


def _ensure_rollouts(clients: Clients, retry: Retrier, progress: Progress) -> None:
    """Find this run's rollouts (marker / ListJobs; batches by token); start them if absent."""
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
        requests = _plan(clients, retry, progress).robomaker_requests
        arns = robomaker_backend.ensure_started(clients.robomaker, retry, requests)
    progress.known["SimulationJobBatchArns"] = arns


def _waited_seconds(job: Mapping[str, Any]) -> float | None:
    created = job.get("CreationTime")
    return wall_clock() - created.timestamp() if isinstance(created, datetime) else None


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
            wall_clock() - progress.planned_at
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
    *,
    pretrained_model: pretrained.PretrainedModel | None,
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
        "dataPrefix": run.data_prefix,
        "pretrained": pretrained_model.lineage() if pretrained_model else None,
        "waitFor": props.wait_for,
        "trainingJob": {"name": run.training_job_name, "arn": data["TrainingJobArn"]},
        "rolloutJobId": job_id,
        "batchJobQueue": props.batch.job_queue_arn if props.batch else None,
        "simulationJobBatchArns": list(rollout_ids.get("SimulationJobBatchArns") or []),
        "simulationJobArns": list(job_arns),
        "tags": run.tags,
        "workers": workers,
        "data": dict(data),
        "recordedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


on_event = _guard(_on_event)
is_complete = _guard(_is_complete)
