"""on_event Delete (and the is_complete calls that finish it): mark the run stopped and stop it,
with every other marked run of the experiment."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from . import (
    common,
    files,
    stopping,
)
from .clients import Clients, get_clients
from .common import (
    IS_COMPLETE_TIMEOUT_SECONDS,
    ON_EVENT_TIMEOUT_SECONDS,
    REPORT_MARGIN_SECONDS,
    _budget,
)
from .errors import (
    PropertyError,
    StopError,
)
from .manifest import _own_entry
from .naming import is_run_id
from .props import RunProps, parse_properties
from .retry import (
    Retrier,
)
from .stopping import Sweep, Target

LOG = logging.getLogger(__name__)


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
    now = common.wall_clock()
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
        now=common.wall_clock(),
    )
    if report.errors:
        raise StopError(
            f"the rollback kept run {rid} but could not stop {'; '.join(report.errors)}"
        )
    return {"IsComplete": not (report.throttled or report.waiting)}
