"""Carry out an evaluation plan: record it, copy the checkpoint, write the params, submit.

The record ``<evaluation>/evaluation.json`` is created first with ``If-None-Match: *``, so two
deliveries of one event (EventBridge delivers at least once) cannot both submit: the second
finds the record and stops. The job id is written back once Batch answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from .plan import Plan, Target, flat_yaml

TRAINING_PARAMS = ("training_params.yaml", "training_params_0.yaml")


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


def start(s3: Any, batch: Any, target: Target, plan: Plan) -> Mapping[str, Any]:
    """Start the planned evaluation; return its record (``status`` ALREADY_STARTED when another
    delivery got there first)."""
    body = json.dumps(plan.record, sort_keys=True).encode()
    try:
        s3.put_object(
            Bucket=target.bucket,
            Key=plan.record_key,
            Body=body,
            IfNoneMatch="*",
            ContentType="application/json",
        )
    except ClientError as error:
        if _code(error) in ("PreconditionFailed", "ConditionalRequestConflict"):
            existing = read(s3, target.bucket, plan.record_key)
            return {**json.loads(existing or b"{}"), "status": "ALREADY_STARTED"}
        raise
    for source, destination in plan.copies:
        s3.copy_object(
            Bucket=target.bucket,
            Key=destination,
            CopySource={"Bucket": target.bucket, "Key": source},
        )
    for key, text in sorted(plan.objects.items()):
        s3.put_object(Bucket=target.bucket, Key=key, Body=text.encode())
    record = dict(plan.record)
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
