"""EventBridge target: evaluate a run when its training job has finished training.

The rule (``constructs_lib/auto_evaluation.py``) sends this experiment's "SageMaker Training Job
State Change" events for Completed and Stopped jobs. A run counts as trained when it Completed,
or was Stopped by its own time limit (SecondaryStatus ``MaxRuntimeExceeded``, how a DeepRacer
run with ``trainer.max_run_minutes`` usually ends); a run stopped by hand (`rollouts stop`,
`cdk destroy`) is not evaluated. Nothing polls and nothing runs between events.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import boto3

from .plan import EvaluationError, Settings, Target, evaluation_id, plan
from .start import run_inputs, start

AUTOMATIC = "automatic"


def clients() -> tuple[Any, Any]:
    """(s3, batch); tests replace this factory."""
    return boto3.client("s3"), boto3.client("batch")


def config() -> Mapping[str, Any]:
    return json.loads(os.environ["EVALUATION_CONFIG"])


def trained(detail: Mapping[str, Any]) -> bool:
    status = detail.get("TrainingJobStatus")
    return status == "Completed" or (
        status == "Stopped" and detail.get("SecondaryStatus") == "MaxRuntimeExceeded"
    )


def on_training_state(
    event: Mapping[str, Any],
    _context: Any = None,
    *,
    make_clients: Callable[[], tuple[Any, Any]] | None = None,
) -> dict[str, Any]:
    settings_in = config()
    detail = event.get("detail", {})
    name = str(detail.get("TrainingJobName", ""))
    experiment = settings_in["experiment"]
    # Run ids are <experiment>-<8 hex>: "reinvent" never evaluates "reinvent-time-trial"'s runs.
    if not re.fullmatch(rf"{re.escape(experiment)}-[0-9a-f]{{8}}", name):
        return {"evaluated": False, "why": f"{name!r} is not a run of {experiment}"}
    if not trained(detail):
        return {
            "evaluated": False,
            "why": f"{name} ended {detail.get('TrainingJobStatus')}/"
            f"{detail.get('SecondaryStatus')}: only trained runs are evaluated",
        }
    s3, batch = (make_clients or clients)()
    target = Target(
        experiment=experiment,
        run_id=name,
        bucket=settings_in["bucket"],
        run_prefix=f"{settings_in['experimentPrefix']}/runs/{name}",
        region=os.environ.get("AWS_REGION", event.get("region", "")),
        job_queue=settings_in["jobQueue"],
        job_definition=settings_in["jobDefinition"],
        vcpus=int(settings_in["vcpus"]),
        memory_mib=int(settings_in["memoryMib"]),
        tags=settings_in.get("tags", {}),
    )
    settings = Settings(
        **{**settings_in["settings"], "tracks": tuple(settings_in["settings"]["tracks"])}
    )
    keys, checkpoints, params = run_inputs(s3, target)
    try:
        planned = plan(
            target,
            settings,
            evaluation_id=evaluation_id(name, settings, AUTOMATIC),
            model_keys=keys,
            checkpoints_json=checkpoints,
            training_params=params,
        )
    except EvaluationError as error:
        print(json.dumps({"run": name, "evaluated": False, "why": str(error)}))
        return {"evaluated": False, "why": str(error)}
    record = start(s3, batch, target, planned)
    summary = {
        "evaluated": record.get("status") == "SUBMITTED",
        "run": name,
        "evaluationId": planned.evaluation_id,
        "status": record.get("status"),
        "jobId": record.get("jobId"),
    }
    print(json.dumps(summary))
    return summary
