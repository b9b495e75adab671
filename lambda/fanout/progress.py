"""One is_complete invocation's knowledge of its run and the run record it keeps: the start claim,
the stop mark checks and why a poll had to wait."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from . import (
    common,
    records,
)
from .clients import Clients
from .common import WAIT_LIMIT_SECONDS, _describe_error, _plan_start, _store
from .errors import (
    FanoutError,
    PollAgainError,
    RunStoppedError,
    StartError,
    clip,
)
from .naming import is_run_id
from .plan import Run
from .retry import (
    Retrier,
    ThrottledTooLongError,
    error_code,
    is_throttle,
    is_transient,
)
from .start_plan import StartPlan

LOG = logging.getLogger(__name__)


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
    request_id: str | None = None  # the CloudFormation request this poll belongs to


def _read_record(clients: Clients, retry: Retrier, run: Run) -> records.Record:
    try:
        return _store(clients, retry, run.props).read(run.run_id)
    except ThrottledTooLongError:
        raise
    except (ValueError, UnicodeDecodeError) as error:
        raise _corrupt(run, error) from error
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
    waited = common.wall_clock() - progress.planned_at
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


def _plan(clients: Clients, retry: Retrier, progress: Progress) -> StartPlan:
    if progress.plan is None:
        progress.plan = _plan_start(clients, retry, progress.run, progress.pretrained_prefix)
    return progress.plan


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


def _corrupt(run: Run, error: Exception) -> StartError:
    """A run record that does not parse: no later poll reads it better, so the run fails now,
    naming it, instead of waiting out its limit."""
    key = records.key(run.props.prefix, run.run_id)
    return StartError(
        f"the run record s3://{run.props.bucket}/{key} is not valid JSON "
        f"({clip(str(error), 120)}); without it nothing more is started: delete the object "
        "and deploy again"
    )


def _record_error(run: Run, error: Exception) -> FanoutError:
    """What a failed write of the run record means: a lost race or a server error is "poll
    again"; a refusal (AccessDenied, a bucket policy, KMS) fails the run now, since no later poll
    could write it either and nothing is ever started without it."""
    if isinstance(error, FanoutError):
        return error
    if isinstance(error, ValueError | UnicodeDecodeError):
        return _corrupt(run, error)
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
    gets past here, and a Delete from now on watches for what the attempt starts.

    The claim carries a nonce: when the write took effect but its answer was lost, the retry
    finds the object changed (PreconditionFailed); the record read again then shows this
    invocation's own nonce, and the claim is this invocation's, not another's."""
    nonce = uuid.uuid4().hex
    store = _store(clients, retry, run.props)
    changes = {
        "runId": run.run_id,
        attempt_key: common.wall_clock(),
        "startOutcome": None,
        "claim": nonce,
    }
    try:
        return store.update(record, changes)
    except Exception as error:
        if isinstance(error, ClientError) and records.lost_race(error):
            try:
                again = store.read(run.run_id)
            except Exception:
                LOG.warning("could not read back the claim of %s", run.run_id, exc_info=True)
            else:
                if again.document.get("claim") == nonce:
                    LOG.info("the claim of %s landed; its answer was lost", run.run_id)
                    return again
        raise _record_error(run, error) from error


def _outcome(error: BaseException) -> str:
    """How a start call ended, in words that repeat from poll to poll."""
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error_code(error)} (HTTP {status})" if status else error_code(error)
    return type(error).__name__
