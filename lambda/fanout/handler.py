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

from . import (
    batch_backend,
    files,
    pretrained,
    records,
    robomaker_backend,
    start_plan,
    stopping,
    trainer,
)
from .clients import Clients, get_clients
from .errors import (
    MAX_REASON,
    FanoutError,
    PollAgainError,
    PropertyError,
    RunStoppedError,
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
    describe_error,
    error_code,
    is_throttle,
    is_transient,
)
from .start_plan import StartPlan
from .stopping import StopReport, Sweep, Target

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
# A run that failed keeps polling (stopping what turns up of a start attempt whose outcome is
# unknown) until this long after planning, then reports; the Delete that follows goes on watching.
FAIL_BY_SECONDS = 43 * 60.0
# Reasons are clipped so that the summary of what was stopped always fits.
REASON_PART = 500


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


_describe_error = describe_error


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
        # the rollback of an update that failed before it changed anything. is_complete stops
        # any other live run (an is_complete of the failed update may still be starting one).
        LOG.info("run %s already runs these properties: no-op", old_id)
        return {**_no_op(old_id, current), "SweepOthers": True}
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
        # is_complete stops it before the new run starts. The mark, left before this Update
        # reports, keeps an is_complete of the old run that may still be polling (a cancelled
        # update: aws/aws-cdk#31541) from starting anything more.
        result["PreviousRunId"] = old_id
        if is_run_id(old_id):
            _store(clients, retry, props).mark_stopped(
                old_id,
                f"stopped while starting: run {run.run_id} replaced it",
                wall_clock(),
            )
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
    """The recorded attributes of run ``rid`` when it still runs exactly ``raw``: run.json names
    it with these properties, nothing superseded it and nothing marked it stopped."""
    manifest = _read_manifest(clients, retry, props, rid)
    if (
        manifest
        and manifest.get("propertiesHash") == properties_hash(raw)
        and not manifest.get("supersededBy")
        and isinstance(manifest.get("data"), dict)
    ):
        try:
            marked = _store(clients, retry, props).stop_mark(rid)
        except Exception:
            LOG.warning("could not read the stop mark of %s", rid, exc_info=True)
            return None  # unsure: start afresh (the safe side)
        if marked is None:
            return _recorded(manifest["data"], rid)
    return None


def _stop_entry(rid: str, props: RunProps | Any) -> dict[str, Any]:
    """What Delete-like stopping of run ``rid`` needs, as recorded in run.json."""
    target = Target.of(props)
    return {
        "runId": rid,
        "backend": target.backend,
        "jobQueue": target.queue,
        "bucket": target.bucket,
        "prefix": target.prefix,
    }


def _entry_props(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Raw properties that Target.of understands, from a run.json stop entry."""
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


def _replaced_by(new_id: str) -> Callable[[str], str]:
    return lambda rid: f"stopped while starting: run {new_id} replaced it"


def _stop_previous_runs(
    clients: Clients, retry: Retrier, props: RunProps, *, previous: str, old_props: Any, new_id: str
) -> None:
    """Stop every earlier run that may still run before run ``new_id`` starts.

    That is the run the update replaces (``previous``, with the old properties), the run run.json
    records if it is not ``new_id`` and was not superseded yet, every run run.json lists in
    ``unstoppedRuns`` (superseded but never confirmed stopped, e.g. after a failed update whose
    rollback names the FAILED new id), and every other run with a live record under
    ``fanout/`` (an is_complete of a cancelled update may still be starting one). Each is marked
    stopped first. The ``unstoppedRuns`` list is written before stopping and shrinks to what could
    not be stopped, so a later attempt, or the rollback, stops them too. run.json read errors are
    fatal here, before anything is stopped; a start attempt of an earlier run that may still turn
    up makes it poll again, so that two runs never share the experiment.
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
    if pending or document.get("unstoppedRuns") not in (None, []):
        document["unstoppedRuns"] = pending
        files.write_json(clients.s3, retry, props.bucket, key, document)

    now = wall_clock()
    report = StopReport()
    remaining: list[dict[str, Any]] = []
    for entry in pending:
        rid = str(entry["runId"])
        entry_props: Any = (old_props or props) if rid == previous else _entry_props(entry)
        stopped = stopping.stop_recorded_run(
            clients, retry, rid, Target.of(entry_props), reason=_replaced_by(new_id)(rid), now=now
        )
        if not stopped.clean:
            remaining.append(entry)
        report.add(stopped, rid)
    if remaining != pending:
        try:
            files.write_json(
                clients.s3, retry, props.bucket, key, {**document, "unstoppedRuns": remaining}
            )
        except Exception:  # conservative: the list still names them, stopping again is harmless
            LOG.warning("could not record the stopped runs in %s", key, exc_info=True)
    done = tuple(str(e["runId"]) for e in pending)
    swept = stopping.sweep_runs(
        clients,
        retry,
        Target.of(props),
        props.experiment,
        Sweep(keep=new_id, spare="descendants", skip=done),
        reason=_replaced_by(new_id),
        now=now,
    )
    report.add(swept, "")
    if report.throttled:  # not a failure: the next call stops the rest
        raise ThrottledTooLongError(f"stopping the previous run(s) was throttled: {report.errors}")
    if report.errors:
        raise StopError(f"could not stop the previous run {'; '.join(report.errors)}")
    if report.waiting:
        raise PollAgainError(
            f"an earlier run may still have rollouts starting: {report.waiting[0]}",
            cause="an earlier run's rollouts start had an unknown outcome",
        )


# ---------------------------------------------------------------- stopping


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


def _experiment_of(rid: str) -> str:
    return rid.rsplit("-", 1)[0]


def _delete_step(
    clients: Clients, retry: Retrier, rid: str, props: RunProps | Any, *, on_event: bool
) -> dict[str, Any]:
    """Mark run ``rid`` stopped and stop it, and every other live run of the experiment that
    carries a stop mark (an unmarked one is the resource's current run: the cleanup Delete of a
    replaced run spares it; see stopping.Sweep). Throttling past the deadline, or a start attempt that may still turn up, is no
    failure: on_event hands the rest to is_complete (``StopPending``), which returns IsComplete
    False until everything is stopped and nothing can turn up any more."""
    if not is_run_id(rid):
        return {"PhysicalResourceId": rid} if on_event else {"IsComplete": True}
    target = Target.of(props)
    now = wall_clock()
    report = stopping.stop_recorded_run(
        clients,
        retry,
        rid,
        target,
        reason="stopped while starting: the resource was deleted",
        now=now,
    )
    experiment = props.experiment if isinstance(props, RunProps) else _experiment_of(rid)
    earlier = [str(e["runId"]) for e in _unstopped_runs_of(clients, retry, rid, props)]
    for other in earlier:
        # Runs an update could not stop (listed in run.json): the experiment goes away, so
        # they must go too.
        stopped = stopping.stop_recorded_run(
            clients, retry, other, target, reason="stopped: the experiment was deleted", now=now
        )
        report.add(stopped, other)
    swept = stopping.sweep_runs(
        clients,
        retry,
        target,
        experiment,
        Sweep(keep=rid, spare="unmarked", skip=tuple(earlier)),
        reason=lambda _: "stopped: another run of the experiment was deleted",
        now=now,
    )
    report.add(swept, "")
    if report.throttled or (report.waiting and not report.errors):
        LOG.warning("stopping %s is not done (%s); continuing on the next poll", rid, report)
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


def _keep_only(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The rollback kept run ``rid`` as it was: stop every other live run of the experiment (an
    is_complete of the failed update may have started one after its Delete-like stop)."""
    rid = str(event.get("PhysicalResourceId", ""))
    props = parse_properties(event.get("ResourceProperties"))
    retry = _budget(context, IS_COMPLETE_TIMEOUT_SECONDS, REPORT_MARGIN_SECONDS).work
    report = stopping.sweep_runs(
        get_clients(),
        retry,
        Target.of(props),
        props.experiment,
        Sweep(keep=rid, spare="none"),
        reason=lambda _: f"stopped while starting: the rollback kept run {rid}",
        now=wall_clock(),
    )
    if report.errors:
        raise StopError(
            f"the rollback kept run {rid} but could not stop {'; '.join(report.errors)}"
        )
    return {"IsComplete": not (report.throttled or report.waiting)}


def _store(clients: Clients, retry: Retrier, props: RunProps) -> records.Store:
    return records.Store(clients.s3, retry, props.bucket, props.prefix)


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
    started: bool = False  # this invocation started something (the trainer or the rollouts)


def _read_record(clients: Clients, retry: Retrier, run: Run) -> records.Record:
    try:
        return _store(clients, retry, run.props).read(run.run_id)
    except ThrottledTooLongError:
        raise
    except Exception as error:
        raise PollAgainError(
            f"could not read the record of {run.run_id}: {error}",
            cause="the run record could not be read",
        ) from error


def _ancestors(clients: Clients, retry: Retrier, progress: Progress) -> list[str]:
    previous = progress.previous_run
    if not is_run_id(previous) or previous == progress.run.run_id:
        return []
    props = progress.run.props
    return _store(clients, retry, props).ancestors_of(str(previous))


def _note_wait(clients: Clients, retry: Retrier, progress: Progress, cause: str) -> None:
    """Remember in the run record why this poll had to wait, and how many polls in a row did for
    the same cause, so that the wait-limit failure can name it (best effort)."""
    run, props = progress.run, progress.run.props
    try:
        record = _store(clients, retry, props).create(
            run.run_id,
            lambda: _ancestors(clients, retry, progress),
        )
        waiting = record.document.get("waiting")
        same = isinstance(waiting, Mapping) and waiting.get("cause") == cause
        times = int(waiting.get("times", 0)) + 1 if same and isinstance(waiting, Mapping) else 1
        _store(clients, retry, props).update(
            record,
            {"waiting": {"cause": cause, "times": times}},
        )
    except Exception:
        LOG.warning("could not record why %s waits", run.run_id, exc_info=True)


def _last_wait(clients: Clients, retry: Retrier, run: Run) -> str:
    try:
        waiting = _read_record(clients, retry, run).document.get("waiting")
    except Exception:
        return ""
    if not isinstance(waiting, Mapping) or not waiting.get("cause"):
        return ""
    times = waiting.get("times")
    counted = f" ({times} polls in a row)" if isinstance(times, int) and times > 1 else ""
    return f"; it last polled again because {clip(str(waiting['cause']), 200)}{counted}"


def _check_wait_limit(clients: Clients, retry: Retrier, progress: Progress) -> None:
    if progress.planned_at is None:
        return  # an event from before PlannedAt existed: _check uses the trainer's CreationTime
    waited = wall_clock() - progress.planned_at
    if waited > WAIT_LIMIT_SECONDS:
        raise StartError(
            f"not {progress.run.props.wait_for} after {waited / 60:.0f} min (limit "
            f"{WAIT_LIMIT_SECONDS / 60:.0f} min, counted from planning)"
            + _last_wait(clients, retry, progress.run)
        )


def _check_not_stopped(clients: Clients, retry: Retrier, run: Run) -> None:
    """Before and after each start call: a run marked stopped (Delete, replacing update, its own
    failure) starts nothing more, and what it started is stopped by the failure path."""
    props = run.props
    try:
        mark = _store(clients, retry, props).stop_mark(run.run_id)
    except ThrottledTooLongError:
        raise
    except Exception as error:
        raise PollAgainError(
            f"could not read the stop mark of {run.run_id}: {error}",
            cause="the stop mark could not be read",
        ) from error
    if mark is not None:
        raise RunStoppedError(str(mark.get("reason") or "stopped while starting"))


def _failed_run(
    clients: Clients, retry: Retrier, progress: Progress, cause: str
) -> StartError | dict[str, Any]:
    """Mark the run stopped (the first reason stays), stop it, and report; while a start attempt
    whose outcome is unknown may still turn up, poll again (up to FAIL_BY_SECONDS after
    planning) so that what turns up is stopped too."""
    run = progress.run
    now = wall_clock()
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


def _plan(clients: Clients, retry: Retrier, progress: Progress) -> StartPlan:
    if progress.plan is None:
        progress.plan = _plan_start(clients, retry, progress.run, progress.pretrained_prefix)
    return progress.plan


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
    files.clear_handshake_markers(clients.s3, retry, props.bucket, run.data_prefix)
    _check_not_stopped(clients, retry, run)
    arn = trainer.create(clients.sagemaker, retry, plan.training_request)
    progress.started = True
    LOG.info("training job %s created", arn)
    _check_not_stopped(clients, retry, run)


def _outcome(error: BaseException) -> str:
    """How a start call ended, in words that repeat from poll to poll."""
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error_code(error)} (HTTP {status})" if status else error_code(error)
    return type(error).__name__


def _update_record(
    clients: Clients, retry: Retrier, run: Run, record: records.Record, changes: dict[str, Any]
) -> records.Record:
    """A conditional change of the run record that may fail (logged): the next poll, or the
    Delete, finds the job by name then."""
    try:
        return _store(clients, retry, run.props).update(record, changes)
    except Exception:
        LOG.warning("could not record %s for %s", sorted(changes), run.run_id, exc_info=True)
        return record


def _record_error(run: Run, error: Exception) -> FanoutError:
    """What a failed write of the run record means: a lost race or a server error is "poll
    again"; a refusal (AccessDenied, a bucket policy, KMS) fails the run now, since no later poll
    could write it either and nothing is ever started without it."""
    if isinstance(error, FanoutError):
        return error
    if isinstance(error, ClientError) and records.lost_race(error):
        return PollAgainError(
            f"another invocation is starting {run.run_id}; checking again on the next poll",
            cause="another invocation was starting the run",
        )
    if isinstance(error, ClientError) and not (is_transient(error) or is_throttle(error)):
        key = records.key(run.props.prefix, run.run_id)
        return StartError(
            f"the run record s3://{run.props.bucket}/{key} cannot be written "
            f"({_describe_error(error)}); nothing is started without it"
        )
    return PollAgainError(
        f"could not write the record of {run.run_id}: {error}",
        cause="the run record could not be written",
    )


def _claim(
    clients: Clients, retry: Retrier, run: Run, record: records.Record, attempt_key: str
) -> records.Record:
    """Record a start attempt with a conditional write: of two concurrent invocations only one
    gets past here, and a Delete from now on watches for what the attempt starts."""
    try:
        return _store(clients, retry, run.props).update(
            record, {"runId": run.run_id, attempt_key: wall_clock(), "startOutcome": None}
        )
    except Exception as error:
        raise _record_error(run, error) from error


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
            f"the SubmitJob of {run.run_id} {wall_clock() - attempted:.0f}s ago had an unknown "
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
