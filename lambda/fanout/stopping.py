"""Stopping runs: one run by name and recorded ids, and the sweep of every live run of an
experiment that a Delete, a replacing update or a rollback does (README.md, "The fan-out").

Everything here works from properties that may no longer validate (a Delete must still stop the
jobs): ``Target`` holds only what finding and stopping needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from . import batch_backend, records, robomaker_backend, trainer
from .clients import Clients
from .errors import FanoutError, clip
from .naming import is_run_id
from .props import RunProps
from .retry import Retrier, ThrottledTooLongError, describe_error, is_throttle

LOG = logging.getLogger(__name__)

# We assume that ListJobs (and ListSimulationJobBatches) show a started job within the run's wait
# limit (38 min) of its start call. A start attempt whose outcome is unknown is therefore waited
# for this long before it counts as "can no longer turn up" (README, "The fan-out").
ATTEMPT_HORIZON_SECONDS = 38 * 60.0


@dataclass(frozen=True)
class Target:
    """Where an experiment's runs live: backend, Batch queue, bucket and experiment prefix."""

    backend: str | None
    queue: str | None
    bucket: str | None
    prefix: str | None

    @classmethod
    def of(cls, props: RunProps | Any) -> Target:
        """From parsed properties, or from raw ones that no longer validate."""
        if isinstance(props, RunProps):
            queue = props.batch.job_queue_arn if props.batch else None
            return cls(props.backend, queue, props.bucket, props.prefix)
        raw = props if isinstance(props, Mapping) else {}
        batch = raw.get("Batch") if isinstance(raw.get("Batch"), Mapping) else {}
        return cls(
            _text(raw, "Backend"),
            _text(batch or {}, "JobQueueArn"),
            _text(raw, "Bucket"),
            _text(raw, "Prefix"),
        )

    @property
    def place(self) -> tuple[str, str] | None:
        """(bucket, prefix): a trainer of our name training other data is not ours. None when
        the properties do not say (the trainer is then found by name alone)."""
        return (self.bucket, self.prefix) if self.bucket and self.prefix else None

    def store(self, clients: Clients, retry: Retrier) -> records.Store | None:
        """The experiment's records, None when the properties do not say where they are."""
        if not (self.bucket and self.prefix):
            return None
        return records.Store(clients.s3, retry, self.bucket, self.prefix)


def _text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) and value else None


@dataclass
class StopReport:
    trainer: str = "not checked"
    rollouts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    throttled: bool = False  # some part was still throttled when the deadline came
    waiting: list[str] = field(default_factory=list)  # start attempts that may still turn up
    reason: str | None = None  # the stop mark's reason (the first one written wins)

    def summary(self) -> str:
        return f"trainer {self.trainer}, {len(self.rollouts)} rollout job(s)"

    def add(self, other: StopReport, rid: str = "") -> None:
        self.errors += [f"{rid}: {error}" if rid else error for error in other.errors]
        self.waiting += other.waiting
        self.throttled |= other.throttled

    @property
    def clean(self) -> bool:
        return not (self.errors or self.throttled or self.waiting)


def stop_run(
    clients: Clients,
    retry: Retrier,
    rid: str,
    target: Target,
    known: Mapping[str, Any] | None = None,
) -> StopReport:
    """Stop the trainer and rollouts of run ``rid``, found by name/token/tag and the ids in
    ``known``. Never raises: the report lists what could not be stopped so every part is
    attempted."""
    report = StopReport()
    if not is_run_id(rid):
        report.trainer = "absent"
        return report
    known = known or {}
    try:
        if target.backend == "batch":
            known_ids = [str(known["RolloutJobId"])] if known.get("RolloutJobId") else []
            if known_ids:  # stopped by id first: ListJobs may not show it yet, or be refused
                report.rollouts = batch_backend.stop_ids(
                    clients.batch, retry, known_ids, job_name=rid, queue=target.queue
                )
            if target.queue is None:
                if not known_ids:
                    report.errors.append("Batch.JobQueueArn is unknown, cannot find the rollouts")
            else:
                report.rollouts += batch_backend.stop(
                    clients.batch, retry, target.queue, rid, skip=tuple(known_ids)
                )
        elif target.backend == "robomaker":
            known_arns = list(known.get("SimulationJobBatchArns") or [])
            report.rollouts = robomaker_backend.stop(clients.robomaker, retry, rid, known_arns)
        else:
            report.errors.append(f"Backend {target.backend!r} is unknown, cannot find the rollouts")
    except (ClientError, BotoCoreError, FanoutError) as error:
        report.throttled |= isinstance(error, ThrottledTooLongError)
        report.errors.append(f"rollouts: {clip(describe_error(error), 300)}")
    try:
        report.trainer = trainer.stop(clients.sagemaker, retry, rid, target.place)
    except (ClientError, BotoCoreError, FanoutError) as error:
        report.throttled |= isinstance(error, ThrottledTooLongError)
        report.errors.append(f"trainer: {clip(describe_error(error), 300)}")
    LOG.info("stop %s: %s errors=%s", rid, report.summary(), report.errors)
    return report


def known_ids(record: Mapping[str, Any]) -> dict[str, Any]:
    """The rollout ids a run record holds, in the form ``stop_run`` takes."""
    return {
        "RolloutJobId": record.get("batchJobId"),
        "SimulationJobBatchArns": list(record.get("simulationJobBatchArns") or []),
    }


def unresolved_attempt(
    clients: Clients,
    retry: Retrier,
    rid: str,
    *,
    target: Target,
    record: Mapping[str, Any],
    now: float,
    found: bool = False,
) -> str | None:
    """Why run ``rid`` may still have a rollout job that no lookup shows yet, or None.

    That is a recorded start attempt whose outcome is unknown (no job id or ARN recorded), that
    no lookup finds (``found``: the stop just found some), and that is younger than
    ATTEMPT_HORIZON_SECONDS."""
    if target.backend == "batch":
        attempted, resolved = record.get("submitAttemptAt"), bool(record.get("batchJobId"))
    else:
        attempted = record.get("rolloutsAttemptAt")
        resolved = bool(record.get("simulationJobBatchArns"))
    if found or resolved or not isinstance(attempted, int | float) or isinstance(attempted, bool):
        return None
    age = now - float(attempted)
    if age >= ATTEMPT_HORIZON_SECONDS:
        return None
    if target.backend == "batch" and target.queue:
        if batch_backend.find_jobs(clients.batch, retry, target.queue, rid):
            return None  # it turned up (and stop_run stopped it)
    elif target.backend == "robomaker" and robomaker_backend.find_batches(
        clients.robomaker, retry, rid, []
    ):
        return None
    left = (ATTEMPT_HORIZON_SECONDS - age) / 60
    return (
        f"the rollouts start of {rid} {age:.0f}s ago had an unknown outcome and no lookup shows "
        f"its job yet; still watching for it for {left:.0f} min"
    )


def stop_recorded_run(
    clients: Clients,
    retry: Retrier,
    rid: str,
    target: Target,
    *,
    reason: str,
    now: float,
    known: Mapping[str, Any] | None = None,
    mark_required: bool = True,
) -> StopReport:
    """Mark run ``rid`` stopped (durably, before anything else), stop it with the ids its record
    holds, watch for an attempt that may still turn up, and record it as settled when nothing of
    it can run any more. A mark that cannot be written is an error unless not ``mark_required``
    (the run's own failure path: no other invocation of it starts anything then)."""
    report = StopReport()
    record: dict[str, Any] = {}
    store = target.store(clients, retry)
    if store is not None:
        try:
            mark = store.mark_stopped(rid, reason, now)
            report.reason = str(mark.get("reason") or reason)
        except Exception as error:
            if isinstance(error, ThrottledTooLongError) or is_throttle(error):
                # S3 SlowDown until the deadline: the mark is written on the next call (the
                # Delete's is_complete), which is no failure.
                report.throttled = True
            elif mark_required:
                report.errors.append(f"stop mark: {clip(describe_error(error), 200)}")
            else:
                LOG.warning("could not mark %s stopped", rid, exc_info=True)
        try:
            record = store.read(rid).document
        except Exception as error:  # the ids it holds may be the only way to find a job
            report.errors.append(f"run record: {clip(describe_error(error), 200)}")
    ids = {**known_ids(record), **{k: v for k, v in (known or {}).items() if v}}
    stopped = stop_run(clients, retry, rid, target, ids)
    report.trainer, report.rollouts = stopped.trainer, stopped.rollouts
    report.errors += stopped.errors
    report.throttled |= stopped.throttled
    try:
        waiting = unresolved_attempt(
            clients,
            retry,
            rid,
            target=target,
            record=record,
            now=now,
            found=bool(stopped.rollouts),
        )
    except (ClientError, BotoCoreError, FanoutError) as error:
        report.throttled |= isinstance(error, ThrottledTooLongError)
        waiting = f"could not look for the pending start of {rid}: {describe_error(error)}"
    if waiting:
        report.waiting.append(clip(waiting, 300))
    if report.clean and store is not None:
        store.mark_settled(rid, now)
    return report


@dataclass(frozen=True)
class Sweep:
    """Which live runs a sweep stops: every one except ``keep``, ``skip`` (stopped already) and
    the ones ``spare`` names:

    - ``"unmarked"`` (a Delete): runs without a stop mark. Every run but the resource's current
      one carries a mark (the update that replaced it left one before it reported), so the
      cleanup Delete of a replaced run spares the stack's current run, and the stack's own
      Delete stops every run that a cancelled update or a stale poll may have left.
    - ``"descendants"`` (the run ``keep`` starting): unmarked runs that replaced ``keep``; a
      stale poll of ``keep`` must not stop its successor.
    - ``"none"`` (a rollback that kept ``keep`` as it was).
    """

    keep: str | None
    spare: Literal["unmarked", "descendants", "none"]
    skip: tuple[str, ...] = ()


def live_runs(
    clients: Clients, retry: Retrier, target: Target, experiment: str, sweep: Sweep
) -> list[str]:
    """Runs of ``experiment`` with a record or a stop mark and not yet settled, minus those the
    sweep spares. Listing errors propagate (the caller must not report success then)."""
    store = target.store(clients, retry)
    if store is None:
        return []
    found = []
    for state in store.list_runs(experiment):
        if state.settled or state.rid == sweep.keep or state.rid in sweep.skip:
            continue
        if not state.marked and sweep.spare == "unmarked":
            continue
        if not state.marked and sweep.spare == "descendants":
            ancestors = store.read(state.rid).document.get("ancestors")
            if isinstance(ancestors, list) and sweep.keep in ancestors:
                continue
        found.append(state.rid)
    return found


def sweep_runs(
    clients: Clients,
    retry: Retrier,
    target: Target,
    experiment: str,
    sweep: Sweep,
    *,
    reason: Callable[[str], str],
    now: float,
) -> StopReport:
    """Stop every live run the sweep does not spare (see ``live_runs``)."""
    report = StopReport()
    try:
        runs = live_runs(clients, retry, target, experiment, sweep)
    except Exception as error:
        report.throttled |= isinstance(error, ThrottledTooLongError)
        report.errors.append(f"listing the runs' records: {clip(describe_error(error), 200)}")
        return report
    for rid in runs:
        report.add(stop_recorded_run(clients, retry, rid, target, reason=reason(rid), now=now), rid)
    return report
