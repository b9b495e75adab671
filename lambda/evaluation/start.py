"""Carry out an evaluation plan: record it, copy the checkpoint, write the params, submit.

The record ``<evaluation>/evaluation.json`` is created first with ``If-None-Match: *``, so two
deliveries of one event (EventBridge delivers at least once) cannot both submit: the second
finds the record and stops. The job id is written back once Batch answers.

A record still ``PLANNED`` after the function's own time limit belongs to an invocation that
died before it submitted (or before it wrote the answer down). A later delivery (Lambda's own
retry of the killed invocation comes a minute after its time limit) takes it over with
``If-Match`` on the record's ETag, so only one does. Before it submits, it looks the job up by its
name: a job the dead invocation got accepted is recorded, not submitted a second time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from .plan import Plan, Target, flat_yaml

TRAINING_PARAMS = ("training_params.yaml", "training_params_0.yaml")
# The function stops after FUNCTION_TIMEOUT_SECONDS (constructs_lib/auto_evaluation.py); a
# PLANNED record older than that (plus a margin for clocks) was left by an invocation that no
# longer runs. It must stay below the time limit plus Lambda's first retry delay (1 minute),
# or the retry of a killed invocation would find the record fresh and give up.
FUNCTION_TIMEOUT_SECONDS = 120
STALE_SECONDS = FUNCTION_TIMEOUT_SECONDS + 30


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def read(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as error:
        if _code(error) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def run_inputs(s3: Any, target: Target) -> tuple[list[str], bytes | None, dict[str, Any]]:
    """What planning needs from the run's prefix: its model/ keys, checkpoints file and the
    training params of worker 0."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=target.bucket, Prefix=f"{target.run_prefix}/model/"
    ):
        keys += [item["Key"] for item in page.get("Contents", [])]
    checkpoints = read(s3, target.bucket, f"{target.run_prefix}/model/deepracer_checkpoints.json")
    params: dict[str, Any] = {}
    for name in TRAINING_PARAMS:
        raw = read(s3, target.bucket, f"{target.run_prefix}/{name}")
        if raw is not None:
            params = flat_yaml(raw.decode("utf-8"))
            break
    return keys, checkpoints, params


def _claim(
    s3: Any, target: Target, plan: Plan, now: float
) -> tuple[Mapping[str, Any] | None, bool]:
    """Create the record, or take over a stale one: (None, took over); (the existing record,
    False) when neither is ours."""
    record = {**plan.record, "plannedAt": int(now)}
    body = json.dumps(record, sort_keys=True).encode()
    try:
        s3.put_object(
            Bucket=target.bucket,
            Key=plan.record_key,
            Body=body,
            IfNoneMatch="*",
            ContentType="application/json",
        )
        return None, False
    except ClientError as error:
        if _code(error) not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise
    answer = s3.get_object(Bucket=target.bucket, Key=plan.record_key)
    existing = json.loads(answer["Body"].read() or b"{}")
    stale = (
        existing.get("status") == "PLANNED"
        and not existing.get("jobId")
        and now - float(existing.get("plannedAt", now)) > STALE_SECONDS
    )
    if not stale:
        return existing, False
    try:
        s3.put_object(
            Bucket=target.bucket,
            Key=plan.record_key,
            Body=body,
            IfMatch=answer["ETag"],
            ContentType="application/json",
        )
    except ClientError as error:
        if _code(error) in ("PreconditionFailed", "ConditionalRequestConflict"):
            return existing, False  # another delivery took it over first
        raise
    return None, True


def _submitted_before(batch: Any, plan: Plan) -> str | None:
    """The id of a job of this evaluation's name already in the queue (the dead invocation's)."""
    found = batch.list_jobs(
        jobQueue=plan.submit["jobQueue"],
        filters=[{"name": "JOB_NAME", "values": [plan.submit["jobName"]]}],
    ).get("jobSummaryList", [])
    jobs = [j for j in found if j.get("jobName") == plan.submit["jobName"]]
    return str(max(jobs, key=lambda j: j.get("createdAt", 0))["jobId"]) if jobs else None


def start(
    s3: Any, batch: Any, target: Target, plan: Plan, *, clock: Callable[[], float] = time.time
) -> Mapping[str, Any]:
    """Start the planned evaluation; return its record (``status`` ALREADY_STARTED when another
    delivery has it)."""
    now = clock()
    existing, took_over = _claim(s3, target, plan, now)
    if existing is not None:
        return {**existing, "status": "ALREADY_STARTED"}
    for source, destination in plan.copies:
        s3.copy_object(
            Bucket=target.bucket,
            Key=destination,
            CopySource={"Bucket": target.bucket, "Key": source},
        )
    for key, text in sorted(plan.objects.items()):
        s3.put_object(Bucket=target.bucket, Key=key, Body=text.encode())
    record = {**plan.record, "plannedAt": int(now)}
    earlier = _submitted_before(batch, plan) if took_over else None
    if earlier is not None:
        record.update(status="SUBMITTED", jobId=earlier, note="submitted by an earlier invocation")
    else:
        try:
            answer = batch.submit_job(**plan.submit)
        except ClientError as error:
            record.update(status="FAILED", reason=f"SubmitJob: {_code(error)}: {error}"[:1000])
        else:
            record.update(status="SUBMITTED", jobId=answer["jobId"])
    s3.put_object(
        Bucket=target.bucket,
        Key=plan.record_key,
        Body=json.dumps(record, sort_keys=True).encode(),
        ContentType="application/json",
    )
    return record
