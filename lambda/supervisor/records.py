"""The supervisor's record of a run: ``experiments/<experiment>/supervisor/<run id>.json``.

Only the supervisor writes there. It holds the run's outcome, the supervisor's actions with their
reasons (what ``rollouts status`` shows), the restarts used per worker and the keys of actions
already applied, so that an action is notified once however often a sweep sees its cause.
Writes are conditional on the ETag read (``If-Match``; ``If-None-Match: *`` for a new record):
two invocations never overwrite each other's entries.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from botocore.exceptions import ClientError

from .model import Action, Record

LOG = logging.getLogger(__name__)

FOLDER = "supervisor"
MAX_ACTIONS = 50  # the newest ones; the record stays small whatever a run lives through
MAX_BYTES = 256 * 1024
CONFLICT = ("PreconditionFailed", "ConditionalRequestConflict")


def key(experiment: str, run_id: str) -> str:
    return f"experiments/{experiment}/{FOLDER}/{run_id}.json"


def _get(s3: Any, bucket: str, object_key: str) -> tuple[dict[str, Any] | None, str | None]:
    """(document, ETag); (None, None) when absent. Raises ValueError on a corrupt document."""
    try:
        answer = s3.get_object(Bucket=bucket, Key=object_key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None, None
        raise
    body = answer["Body"].read(MAX_BYTES + 1)
    etag = str(answer.get("ETag"))
    if len(body) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document, etag


def read(s3: Any, bucket: str, experiment: str, run_id: str, *, counter: Any = None) -> Record:
    """The run's record as decisions need it; a corrupt one reads as empty, with the reason."""
    if counter is not None:
        counter.count()
    try:
        document, _ = _get(s3, bucket, key(experiment, run_id))
    except (ValueError, UnicodeDecodeError) as error:
        LOG.warning("record of %s is corrupt: %s", run_id, error)
        return Record(corrupt=f"s3://{bucket}/{key(experiment, run_id)}: {error}")
    return to_record(document or {})


def to_record(document: dict[str, Any]) -> Record:
    def pairs(name: str, convert: Any) -> tuple[Any, ...]:
        raw = document.get(name)
        if not isinstance(raw, dict):
            return ()
        kept = []
        for worker, value in raw.items():
            try:
                kept.append((int(worker), convert(value)))
            except (TypeError, ValueError):
                continue
        return tuple(sorted(kept))

    outcome = document.get("outcome")
    return Record(
        done=frozenset(str(k) for k in document.get("done") or [] if isinstance(k, str)),
        restarts=pairs("restarts", int),
        restart_job_ids=pairs("restartJobs", str),
        restarted_at=pairs("restartedAt", float),
        outcome=str(outcome["kind"]) if isinstance(outcome, dict) and "kind" in outcome else None,
        stopped_by=str(document["stoppedBy"]) if document.get("stoppedBy") else None,
    )


def _stamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def apply_to(document: dict[str, Any], action: Action, now: float, job_id: str = "") -> bool:
    """Add ``action`` to a record document; False when it was there already (no notification)."""
    done = [k for k in document.get("done") or [] if isinstance(k, str)]
    first = action.key not in done
    if first:
        done.append(action.key)
    document["done"] = done
    document["runId"] = action.run_id
    document["experiment"] = action.experiment
    if action.kind == "outcome":
        if "outcome" in document:
            return False
        document["outcome"] = {"kind": action.outcome, "reason": action.reason, "at": _stamp(now)}
    if action.kind == "stop" and first:
        document.setdefault("stoppedBy", action.rule)
    if action.kind == "restart" and action.worker is not None:
        restarts = dict(document.get("restarts") or {})
        restarts[str(action.worker)] = max(int(restarts.get(str(action.worker), 0)), action.attempt)
        document["restarts"] = restarts
        if first:
            started = dict(document.get("restartedAt") or {})
            started[str(action.worker)] = now
            document["restartedAt"] = started
        if job_id:
            jobs = dict(document.get("restartJobs") or {})
            jobs[str(action.worker)] = job_id
            document["restartJobs"] = jobs
    if first:
        entry = {
            "at": _stamp(now),
            "action": action.kind,
            "rule": action.rule,
            "reason": action.reason,
        }
        if job_id:
            entry["jobId"] = job_id
        document["actions"] = [*(document.get("actions") or []), entry][-MAX_ACTIONS:]
    return first


def record(s3: Any, bucket: str, action: Action, now: float, job_id: str = "") -> bool:
    """Write ``action`` into its run's record; True when it is new there (notify it)."""
    object_key = key(action.experiment, action.run_id)
    for _ in range(3):
        try:
            document, etag = _get(s3, bucket, object_key)
        except (ValueError, UnicodeDecodeError) as error:
            # A corrupt record is replaced (its reason is logged): the run must not wait on it.
            LOG.warning("replacing the corrupt record %s: %s", object_key, error)
            document, etag = None, "corrupt"
        document = dict(document or {})
        first = apply_to(document, action, now, job_id)
        body = json.dumps(document, sort_keys=True).encode()
        condition: dict[str, str]
        if etag is None:
            condition = {"IfNoneMatch": "*"}
        elif etag == "corrupt":
            condition = {}
        else:
            condition = {"IfMatch": etag}
        try:
            s3.put_object(
                Bucket=bucket,
                Key=object_key,
                Body=body,
                ContentType="application/json",
                **condition,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in CONFLICT:
                continue  # someone wrote in between: read again and merge
            raise
        return first
    raise RuntimeError(f"could not write {object_key}: it kept changing")
