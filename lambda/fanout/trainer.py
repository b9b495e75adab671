"""The SageMaker training job that runs the RL trainer (Redis + RL Coach) of one run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from .errors import StartError
from .props import RunProps
from .retry import Retrier, error_code, error_message

# Log lines of the simapp trainer (RL Coach), e.g.
#   Training> Name=main_level/agent, Worker=0, Episode=19, Total reward=-102.88, Steps=19019, ...
#   Policy training> Surrogate loss=-0.0326, KL divergence=7.2e-06, Entropy=2.83, ...
#   Testing> Name=main_level/agent, Worker=0, Episode=19, Total reward=1359.12, ...
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
METRIC_DEFINITIONS = (
    {"Name": "reward-training", "Regex": rf"^Training>.*Total reward={_NUMBER}"},
    {"Name": "reward-evaluation", "Regex": rf"^Testing>.*Total reward={_NUMBER}"},
    # Only matches images that log progress on the trainer; harmless otherwise.
    {"Name": "progress-training", "Regex": rf"^Training>.*Progress={_NUMBER}"},
    {"Name": "ppo-surrogate-loss", "Regex": rf"^Policy training>.*Surrogate loss={_NUMBER}"},
    {"Name": "ppo-entropy", "Regex": rf"^Policy training>.*Entropy={_NUMBER}"},
)
ACTIVE = "InProgress"
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})


def hyperparameters(
    props: RunProps,
    region: str,
    model_metadata_key: str,
    reward_function_key: str,
    from_file: Mapping[str, str],
) -> dict[str, str]:
    values = dict(from_file)
    values.update(
        {
            "s3_bucket": props.bucket,
            "s3_prefix": props.prefix,
            "aws_region": region,
            "model_metadata_s3_key": f"{props.prefix}/{model_metadata_key}",
            "reward_function_s3_source": f"{props.prefix}/{reward_function_key}",
        }
    )
    if props.trainer.pretrained_bucket and props.trainer.pretrained_prefix:
        values["pretrained_s3_bucket"] = props.trainer.pretrained_bucket
        values["pretrained_s3_prefix"] = props.trainer.pretrained_prefix
        if props.trainer.pretrained_checkpoint:
            values["pretrained_checkpoint"] = props.trainer.pretrained_checkpoint
    return values


def training_job_request(
    props: RunProps, name: str, tags: Mapping[str, str], hyper: Mapping[str, str]
) -> dict[str, Any]:
    t = props.trainer
    return {
        "TrainingJobName": name,
        "HyperParameters": dict(hyper),
        "AlgorithmSpecification": {
            "TrainingImage": t.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(m) for m in METRIC_DEFINITIONS],
        },
        "RoleArn": t.role_arn,
        "OutputDataConfig": {"S3OutputPath": f"s3://{props.bucket}/{props.prefix}/"},
        "ResourceConfig": {
            "InstanceType": t.instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": t.volume_size_gb,
        },
        # VPC mode: the trainer's Redis (6379) must be reachable from the rollouts.
        "VpcConfig": {"SecurityGroupIds": list(t.security_groups), "Subnets": list(t.subnets)},
        "StoppingCondition": {"MaxRuntimeInSeconds": t.max_runtime_seconds},
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
        "EnableNetworkIsolation": False,
    }


def _not_found(error: ClientError) -> bool:
    return error_code(error) in ("ValidationException", "ResourceNotFound") and (
        "not found" in error_message(error).lower()
    )


def describe(sagemaker: Any, retry: Retrier, name: str) -> dict[str, Any] | None:
    """DescribeTrainingJob, or None when no job has that name."""
    try:
        return retry.call(
            "sagemaker:DescribeTrainingJob",
            lambda: sagemaker.describe_training_job(TrainingJobName=name),
        )
    except ClientError as error:
        if _not_found(error):
            return None
        raise


def is_ours(job: Mapping[str, Any], bucket: str, prefix: str) -> bool:
    """A job with our deterministic name must also train our experiment's data."""
    hyper = job.get("HyperParameters") or {}
    return hyper.get("s3_bucket") == bucket and hyper.get("s3_prefix") == prefix


def check_ours(job: Mapping[str, Any], props: RunProps) -> None:
    if not is_ours(job, props.bucket, props.prefix):
        hyper = job.get("HyperParameters") or {}
        raise StartError(
            f"training job {job.get('TrainingJobName')} exists but trains "
            f"s3://{hyper.get('s3_bucket')}/{hyper.get('s3_prefix')}, not "
            f"s3://{props.bucket}/{props.prefix}; refusing to adopt it"
        )


def create(sagemaker: Any, retry: Retrier, request: Mapping[str, Any]) -> str:
    """CreateTrainingJob; "already exists" means an earlier delivery created it (name is unique)."""
    try:
        response = retry.call(
            "sagemaker:CreateTrainingJob", lambda: sagemaker.create_training_job(**request)
        )
        return str(response["TrainingJobArn"])
    except ClientError as error:
        if error_code(error) != "ResourceInUse":
            raise
    existing = describe(sagemaker, retry, request["TrainingJobName"])
    if existing is None:
        raise StartError(f"training job {request['TrainingJobName']} is in use but not describable")
    return str(existing["TrainingJobArn"])


def stop(sagemaker: Any, retry: Retrier, name: str, data: tuple[str, str] | None = None) -> str:
    """Stop the job if it runs; returns what was found (absent / stopping / its terminal state).

    With ``data`` = (bucket, prefix), a job of that name that trains other data is left alone."""
    job = describe(sagemaker, retry, name)
    if job is None:
        return "absent"
    if data is not None and not is_ours(job, *data):
        return "not ours (left alone)"
    status = str(job["TrainingJobStatus"])
    if status != ACTIVE:
        return status
    try:
        retry.call(
            "sagemaker:StopTrainingJob", lambda: sagemaker.stop_training_job(TrainingJobName=name)
        )
    except ClientError as error:
        # Raced with its own end, or gone: either way it no longer runs.
        if error_code(error) != "ValidationException":
            raise
    return "stopping"
