"""Evaluations of a deployed run from the operator's side: start one (``rollouts evaluate``).
Listing them (``rollouts status``, ``rollouts stop``) is in ``rollouts.operate``.

Planning and starting are the evaluation Lambda's own modules (``lambda/evaluation``), so an
evaluation started by hand is the same as one the experiment stack starts by itself.
"""

from __future__ import annotations

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
