"""The resource's latest CloudFormation request: ``<Prefix>/fanout/request.json``.

on_event of every Create and Update writes it (best effort) before it reports; an is_complete
polls for the request it belongs to only while that is still the latest one. A cancelled
update's waiter may go on polling after the rollback (aws/aws-cdk#31541); when the rollback names
only the old run, no stop mark tells that waiter it is stale, and its first poll would start its
run and stop the one the rollback kept. Its request id, no longer the latest, does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from . import common, files, records
from .clients import Clients
from .errors import PollAgainError
from .props import RunProps
from .retry import Retrier, ThrottledTooLongError

LOG = logging.getLogger(__name__)

NAME = "request.json"


def key(props: RunProps) -> str:
    return f"{props.prefix}/{records.FOLDER}/{NAME}"


def note(
    clients: Clients, retry: Retrier, props: RunProps, event: Mapping[str, Any], run_id: str
) -> None:
    """Record ``event`` as the latest request (a failure is logged: the run still starts)."""
    request_id = event.get("RequestId")
    if not request_id:
        return
    document = {
        "requestId": str(request_id),
        "requestType": str(event.get("RequestType")),
        "runId": run_id,
        "at": int(common.wall_clock()),
    }
    try:
        files.write_json(clients.s3, retry, props.bucket, key(props), document)
    except Exception:
        LOG.warning("could not record request %s as the latest", request_id, exc_info=True)


def superseded_by(
    clients: Clients, retry: Retrier, props: RunProps, event: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The later request that replaced ``event``'s, None while ``event``'s is the latest (or
    none was recorded)."""
    request_id = event.get("RequestId")
    if not request_id:
        return None
    try:
        latest = files.read_json(clients.s3, retry, props.bucket, key(props))
    except ThrottledTooLongError:
        raise
    except Exception as error:
        raise PollAgainError(
            f"could not read {key(props)}: {error}",
            cause="the latest request could not be read",
        ) from error
    if not latest or latest.get("requestId") in (None, request_id):
        return None
    return latest
