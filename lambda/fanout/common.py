"""What every step of the fan-out shares: its Lambda timeouts and reserves, the test seams
(``wall_clock``, ``make_retrier``: call them through this module so tests can replace them), the
properties fingerprint, the run record store and the start plan."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import (
    files,
    pretrained,
    records,
    start_plan,
)
from .clients import Clients
from .plan import Run
from .props import RunProps
from .retry import (
    Retrier,
    describe_error,
)
from .start_plan import StartPlan

LOG = logging.getLogger(__name__)


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


def properties_hash(raw: Any) -> str:
    """Fingerprint of the properties a run was started with (ServiceToken excluded)."""
    text = json.dumps(_comparable(raw), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _comparable(raw: Any) -> Any:
    # A new ServiceToken (the provider was replaced) is not a change of the run.
    return (
        {k: v for k, v in raw.items() if k != "ServiceToken"} if isinstance(raw, Mapping) else raw
    )


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


def _store(clients: Clients, retry: Retrier, props: RunProps) -> records.Store:
    return records.Store(clients.s3, retry, props.bucket, props.prefix)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
