"""Evaluations of a deployed run from the operator's side: start one (``rollouts evaluate``), list
them with their Batch state (``rollouts status``) and find them to stop (``rollouts stop``).

Planning and starting are the evaluation Lambda's own modules (``lambda/evaluation``), so an
evaluation started by hand is the same as one the experiment stack starts by itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from rollouts.operate import (
    LAMBDA_DIR,
    Aws,
    Deployed,
    OperateError,
    _aws_call,
    _s3_get,
    find_stack,
)

EXPERIMENT_TAG = "rollouts:experiment"


def evaluation_modules() -> dict[str, ModuleType]:
    """``lambda/evaluation``'s plan and start modules (``lambda/`` is the Lambda asset root, not
    an installed package: it is appended to ``sys.path``)."""
    if str(LAMBDA_DIR) not in sys.path and (LAMBDA_DIR / "evaluation" / "__init__.py").is_file():
        sys.path.append(str(LAMBDA_DIR))
    try:
        from evaluation import plan, start  # noqa: PLC0415
    except ImportError as error:
        raise OperateError(
            f"cannot load the evaluation logic from {LAMBDA_DIR}/evaluation ({error}); run "
            "the CLI from a checkout of the repository"
        ) from None
    return {"plan": plan, "start": start}


def target_of(deployed: Deployed, region: str) -> Any:
    modules = evaluation_modules()
    if deployed.backend != "batch":
        raise OperateError(
            f"experiment {deployed.experiment} runs on {deployed.backend}: evaluations run as "
            "Batch jobs on an experiment's own queue (backend=batch)",
            2,
        )
    missing = [
        key
        for key in ("DataBucket", "JobQueue", "RolloutJobDefinition", "RolloutVcpus")
        if not deployed.output(key)
    ]
    if missing:
        raise OperateError(
            f"stack {deployed.stack} has no {', '.join(missing)} output: deploy it with this "
            "version first"
        )
    tags = {k: v for k, v in deployed.tags.items() if not k.startswith("aws:")}
    return modules["plan"].Target(
        experiment=deployed.experiment,
        run_id=deployed.run_id,
        bucket=deployed.bucket or "",
        run_prefix=deployed.data_prefix,
        region=region,
        job_queue=deployed.output("JobQueue") or "",
        job_definition=deployed.output("RolloutJobDefinition") or "",
        vcpus=int(deployed.output("RolloutVcpus") or "4"),
        memory_mib=int(deployed.output("RolloutMemoryMib") or "8192"),
        tags={**tags, EXPERIMENT_TAG: deployed.experiment},
    )


def start_evaluation(
    aws: Aws, experiment: str, run: str | None, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Plan and start an evaluation of the run; raises ``OperateError`` (AWS) or the plan's
    ``EvaluationError`` (what cannot be evaluated)."""
    modules = evaluation_modules()
    deployed = find_stack(aws, experiment, run)
    s3, batch = aws.client("s3"), aws.client("batch")
    target = target_of(deployed, s3.meta.region_name)
    chosen = modules["plan"].Settings(**settings)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S.%f")
    keys, checkpoints, params = _aws_call(
        f"s3: read s3://{target.bucket}/{target.run_prefix}",
        lambda: modules["start"].run_inputs(s3, target),
    )
    planned = modules["plan"].plan(
        target,
        chosen,
        evaluation_id=modules["plan"].evaluation_id(target.run_id, chosen, stamp),
        model_keys=keys,
        checkpoints_json=checkpoints,
        training_params=params,
    )
    record = _aws_call(
        "start the evaluation", lambda: modules["start"].start(s3, batch, target, planned)
    )
    return {
        **record,
        "results": f"s3://{target.bucket}/{planned.prefix}/",
        "queue": target.job_queue,
    }


def records(aws: Aws, bucket: str, run_prefix: str) -> list[dict[str, Any]]:
    """Every evaluation record of a run (``<run>/evaluations/<id>/evaluation.json``)."""
    s3 = aws.client("s3")

    def folders() -> list[str]:
        found = []
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{run_prefix}/evaluations/", Delimiter="/"
        ):
            found += [c["Prefix"] for c in page.get("CommonPrefixes", [])]
        return sorted(found)

    result = []
    for folder in _aws_call("s3:ListObjectsV2", folders):
        data = _s3_get(s3, bucket, f"{folder}evaluation.json")
        if data is None:
            continue
        try:
            result.append(json.loads(data))
        except ValueError:
            result.append({"evaluationId": folder.rstrip("/").rsplit("/", 1)[-1], "status": "?"})
    return result


def evaluation_status(aws: Aws, bucket: str, run_prefix: str) -> list[dict[str, Any]]:
    """Each evaluation with its Batch job's state and, for an array job, its children's."""
    found = records(aws, bucket, run_prefix)
    ids = [r["jobId"] for r in found if r.get("jobId")]
    jobs: dict[str, Any] = {}
    if ids:
        batch = aws.client("batch")
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]

            def describe(chunk: list[str] = chunk) -> Any:
                return batch.describe_jobs(jobs=chunk)

            answer = _aws_call("batch:DescribeJobs", describe)
            jobs.update({j["jobId"]: j for j in answer.get("jobs", [])})
    rows = []
    for record in found:
        job = jobs.get(record.get("jobId") or "", {})
        summary = job.get("arrayProperties", {}).get("statusSummary", {})
        rows.append(
            {
                "evaluation": record.get("evaluationId"),
                "checkpoint": record.get("checkpoint"),
                "legs": [leg.get("name") for leg in record.get("legs", [])],
                "job_id": record.get("jobId"),
                "job_name": record.get("jobName"),
                "state": job.get("status") or record.get("status"),
                "children": {k: v for k, v in sorted(summary.items()) if v},
                "reason": job.get("statusReason") or record.get("reason"),
            }
        )
    return rows
