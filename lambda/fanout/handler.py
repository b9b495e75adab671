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

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .common import _describe_error, properties_hash
from .create import _create, _update
from .delete import _delete
from .errors import FanoutError
from .naming import run_id
from .poll import _is_complete

__all__ = ["is_complete", "on_event", "properties_hash", "run_id"]

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)


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


on_event = _guard(_on_event)
is_complete = _guard(_is_complete)
