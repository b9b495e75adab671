"""``<Prefix>/run.json``, the experiment's record of its current run: reading it for an Update's
no-op check and the resource's attributes, writing it once a run is up, and stopping the earlier
runs it names before a new one starts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from . import (
    common,
    files,
    pretrained,
    stopping,
)
from .clients import Clients
from .common import _store, properties_hash
from .errors import (
    PollAgainError,
    StopError,
)
from .naming import is_run_id
from .plan import Run
from .props import RunProps
from .retry import (
    Retrier,
    ThrottledTooLongError,
)
from .stopping import StopReport, Sweep, Target

LOG = logging.getLogger(__name__)


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

    now = common.wall_clock()
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
        "pretrained": pretrained_model.lineage(run.data_prefix) if pretrained_model else None,
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
