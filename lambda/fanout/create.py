"""on_event Create and Update: validate, plan every request and return the new run id (nothing
starts here; is_complete starts it, see poll.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from . import common, current_request
from .clients import get_clients
from .common import (
    ON_EVENT_RESERVE_SECONDS,
    ON_EVENT_TIMEOUT_SECONDS,
    _budget,
    _comparable,
    _plan_start,
    _store,
)
from .errors import (
    PropertyError,
)
from .manifest import _current_run_data, _recorded_data
from .naming import Place, is_run_id, run_id
from .plan import Run
from .props import RunProps, parse_properties
from .start_plan import StartPlan

LOG = logging.getLogger(__name__)


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
        "PlannedAt": int(common.wall_clock()),  # the wait limit counts from here
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
    clients = get_clients()
    plan = _plan_start(clients, budget.work, run)  # bad asset or payload: nothing starts
    current_request.note(clients, budget.work, props, event, run.run_id)
    return _planned(run, plan)


def _update(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    raw = event.get("ResourceProperties")
    props = parse_properties(raw)  # bad input: nothing changes
    old_id = str(event.get("PhysicalResourceId", ""))
    clients = get_clients()
    retry = _budget(context, ON_EVENT_TIMEOUT_SECONDS, ON_EVENT_RESERVE_SECONDS).work
    if _comparable(raw) == _comparable(event.get("OldResourceProperties")):
        # Same run: no job is touched. Data is re-read so GetAtt keeps resolving.
        current_request.note(clients, retry, props, event, old_id)
        return _no_op(old_id, _recorded_data(clients, retry, props, old_id))
    current = _current_run_data(clients, retry, props, raw, old_id)
    if current is not None:
        # The run `old_id` was started with exactly these properties and nothing replaced it:
        # the rollback of an update that failed before it changed anything. is_complete stops
        # any other live run (an is_complete of the failed update may still be starting one).
        LOG.info("run %s already runs these properties: no-op", old_id)
        current_request.note(clients, retry, props, event, old_id)
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
                common.wall_clock(),
            )
    current_request.note(clients, retry, props, event, run.run_id)
    return result


def _no_op(rid: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"PhysicalResourceId": rid, "Data": data, "NoOp": True}
