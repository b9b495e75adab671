"""Builders of the fan-out tests: files assets, resource properties, CloudFormation events."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from fanout_fakecloud import ACCOUNT, REGION

BUCKET = "platform-data-bucket"
ASSET_BUCKET = "cdk-assets-bucket"
ASSET_KEY = "assets/files-abc123.zip"
PREFIX = "experiments/demo"
STACK_ID = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}"
    ":stack/rollouts-demo/0a1b2c3d-1111-2222-3333-444455556666"
)
QUEUE = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/rollouts"
JOB_DEF = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/rollouts-simapp:3"
SIM_APP = f"arn:aws:robomaker:{REGION}:{ACCOUNT}:simulation-application/deepracer/1700000000000"

YAML_TEMPLATE = """\
JOB_TYPE: "TRAINING"
WORLD_NAME: "{world}"
RACE_TYPE: "TIME_TRIAL"
SAGEMAKER_SHARED_S3_BUCKET: "{{{{bucket}}}}"
SAGEMAKER_SHARED_S3_PREFIX: "{{{{prefix}}}}"
AWS_REGION: "{{{{region}}}}"
ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID: "{{{{account}}}}"
TRAINING_JOB_ARN: "{{{{training_job_arn}}}}"
KINESIS_VIDEO_STREAM_NAME: "{{{{video_stream}}}}"
METRICS_S3_BUCKET: "{{{{bucket}}}}"
METRICS_S3_OBJECT_KEY: "{{{{prefix}}}}/metrics/TrainingMetrics{suffix}.json"
MODEL_METADATA_FILE_S3_KEY: "{{{{prefix}}}}/model/model_metadata.json"
BODY_SHELL_TYPE: "deepracer"
CAR_COLOR: "Red"
"""
HYPERPARAMETERS = {
    "batch_size": 64,
    "lr": 0.0003,
    "num_episodes_between_training": 20,
    "exploration_type": "categorical",
}


def yaml_for(world: str, index: int = 0, per_worker_metrics: bool = False) -> str:
    suffix = f"_{index}" if per_worker_metrics and index else ""
    return YAML_TEMPLATE.format(world=world, suffix=suffix)


def make_asset(
    worlds: list[str], *, per_worker_metrics: bool = False, yaml_texts: list[str] | None = None
) -> bytes:
    """A files asset as the ``rollouts`` package would synthesize it (docs/fanout-contract.md)."""
    texts = yaml_texts or [yaml_for(w, i, per_worker_metrics) for i, w in enumerate(worlds)]
    manifest = {
        "worker_params": [f"training_params_{i}.yaml" for i in range(len(texts))],
        "files": [
            {"source": "reward_function.py", "key": "reward_function.py"},
            {"source": "model_metadata.json", "key": "model/model_metadata.json"},
            {"source": "hyperparameters.json", "key": "hyperparameters.json"},
        ],
        "hyperparameters": "hyperparameters.json",
        "model_metadata_key": "model/model_metadata.json",
        "reward_function_key": "reward_function.py",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for i, text in enumerate(texts):
            archive.writestr(f"training_params_{i}.yaml", text)
        archive.writestr("reward_function.py", "def reward_function(params):\n    return 1.0\n")
        archive.writestr("model_metadata.json", json.dumps({"action_space_type": "continuous"}))
        archive.writestr("hyperparameters.json", json.dumps(HYPERPARAMETERS))
    return buffer.getvalue()


def make_props(
    n: int = 2,
    backend: str = "batch",
    *,
    video: bool = False,
    worlds: list[str] | None = None,
    wait_for: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """ResourceProperties exactly as CloudFormation delivers them (every scalar a string)."""
    props: dict[str, Any] = {
        "ServiceToken": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:provider-framework-onEvent",
        "Experiment": "demo",
        "Backend": backend,
        "Bucket": BUCKET,
        "Prefix": PREFIX,
        "FilesBucket": ASSET_BUCKET,
        "FilesKey": ASSET_KEY,
        "RolloutCount": str(n),
        "Worlds": worlds or ["reInvent2019_track"] * n,
        "VideoStreams": [f"rollouts-demo-{i}" for i in range(n)] if video else [],
        "Trainer": {
            "ImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/simapp:5.3.3-cpu",
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/rollouts-trainer",
            "InstanceType": "ml.c5.2xlarge",
            "VolumeSizeGb": "30",
            "MaxRuntimeSeconds": "7200",
            "Subnets": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"],
            "SecurityGroups": ["sg-0ccccccccccccccc3"],
        },
        "Tags": tags if tags is not None else {"team": "research"},
    }
    if wait_for:
        props["WaitFor"] = wait_for
    if backend == "batch":
        props["Batch"] = {
            "JobQueueArn": QUEUE,
            "JobDefinitionArn": JOB_DEF,
            "AttemptDurationSeconds": "7200",
            "Vcpus": "4",
            "MemoryMib": "8192",
        }
    else:
        props["RoboMaker"] = {
            "SimulationApplicationArn": SIM_APP,
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/rollouts-robomaker",
            "Subnets": ["subnet-0aaaaaaaaaaaaaaa1"],
            "SecurityGroups": ["sg-0ddddddddddddddd4"],
            "MaxJobDurationSeconds": "7200",
            "SimulationUnitLimit": "15",
            "ComputeType": "CPU",
            "AssignPublicIp": "true",
        }
    return props


def make_event(
    request_type: str,
    props: dict[str, Any],
    *,
    request_id: str = "req-1",
    physical_id: str | None = None,
    old_props: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": props["ServiceToken"],
        "ResponseURL": "https://cloudformation-custom-resource-response.example/x",
        "StackId": STACK_ID,
        "RequestId": request_id,
        "LogicalResourceId": "Run",
        "ResourceType": "Custom::RolloutsRun",
        "ResourceProperties": props,
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    if old_props is not None:
        event["OldResourceProperties"] = old_props
    return event


def make_update(
    new: dict[str, Any], old: dict[str, Any], physical_id: str, request_id: str = "req-2"
) -> dict[str, Any]:
    """An Update of run ``physical_id`` from ``old`` to ``new`` properties."""
    return make_event("Update", new, request_id=request_id, physical_id=physical_id, old_props=old)


def client_error(code: str, status: int, operation: str = "PutObject") -> Exception:
    """A botocore ClientError as a service answers it (code and HTTP status)."""
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )
