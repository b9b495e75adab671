"""The SageMaker training job that runs the RL trainer (Redis + RL Coach) of one run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from .errors import StartError
from .naming import run_prefix
from .pretrained import PretrainedModel
from .props import RunProps
from .retry import Retrier, error_code, error_message

# What the training job runs. The image's own SAGEMAKER_PROGRAM (sagemaker_bootstrap.py) is
# DeepRacer on AWS's single-job mode (deepracer-simapp docker/files/ml-code/sagemaker_bootstrap.py
# runs sageonly(): trainer and one simulation in one job). The distributed trainer is
# sage-train.sh (docker/files/ml-code/sage-train.sh: Redis + markov/training_worker.py), as
# deepracer-for-cloud selects it (docker/files/rl-coach/start.py in the simapp repository). The
# SageMaker training toolkit reads SAGEMAKER_PROGRAM from the environment before the image's
# default applies, runs a .sh entry point from /opt/ml/code as a command, and passes the
# hyperparameters as "--key value" arguments (aws/sagemaker-training-toolkit:
# src/sagemaker_training/environment.py, _entry_point_type.py, entry_point.py, mapping.py).
TRAINER_PROGRAM = "sage-train.sh"
TRAINER_ENVIRONMENT = {"SAGEMAKER_PROGRAM": TRAINER_PROGRAM}

# Log lines the trainer prints (sage-train.sh sends training_worker.py's output to the job log),
# formatted by rl_coach's ScreenLogger.log_dict (bundle/rl_coach/rl_coach/logger.py):
#   Training> Name=main_level/agent, Worker=0, Episode=12, Total reward=85.3, Steps=2400, ...
#     one per episode received, for clipped_ppo and sac (policy_optimization_agent.py)
#   Policy training> Surrogate loss=-0.03, KL divergence=7.2e-06, Entropy=2.83, training epoch=0,
#     clipped_ppo only, once per epoch (bundle/rl_coach/rl_coach/agents/clipped_ppo_agent.py)
# SAC logs nothing per training step (bundle/markov/multi_agent_coach/agents/sac_agent.py), and
# "Testing>" lines come from rollout workers only, never from the trainer.
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
EPISODE_METRICS = (
    {"Name": "reward-training", "Regex": rf"^Training>.*Total reward={_NUMBER}"},
    {"Name": "steps-training", "Regex": rf"^Training>.*Steps={_NUMBER}"},
)
PPO_METRICS = (
    {"Name": "ppo-surrogate-loss", "Regex": rf"^Policy training>.*Surrogate loss={_NUMBER}"},
    {"Name": "ppo-kl-divergence", "Regex": rf"^Policy training>.*KL divergence={_NUMBER}"},
    {"Name": "ppo-entropy", "Regex": rf"^Policy training>.*Entropy={_NUMBER}"},
)


def metric_definitions(algorithm: str) -> list[dict[str, str]]:
    """The metric definitions that can match the trainer's log for ``algorithm``."""
    extra = PPO_METRICS if algorithm == "clipped_ppo" else ()
    return [dict(m) for m in (*EPISODE_METRICS, *extra)]


ACTIVE = "InProgress"
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})


def hyperparameters(
    props: RunProps,
    region: str,
    *,
    data_prefix: str,
    model_metadata_key: str,
    from_file: Mapping[str, str],
    pretrained: PretrainedModel | None,
) -> dict[str, str]:
    """The RL hyperparameters plus the arguments markov/training_worker.py parses
    (bundle/markov/training_worker.py: --s3_bucket --s3_prefix --aws_region
    --model_metadata_s3_key --pretrained_s3_bucket --pretrained_s3_prefix
    --pretrained_checkpoint; it reads the RL values from SM_TRAINING_ENV)."""
    values = dict(from_file)
    values.update(
        {
            "s3_bucket": props.bucket,
            "s3_prefix": data_prefix,
            "aws_region": region,
            # A full key in s3_bucket: the trainer does not add the prefix.
            "model_metadata_s3_key": f"{data_prefix}/{model_metadata_key}",
        }
    )
    if pretrained is not None:
        # Both are needed: the trainer's default prefix ('sagemaker') would turn a bucket alone
        # into a pretrained run.
        values["pretrained_s3_bucket"] = pretrained.bucket
        values["pretrained_s3_prefix"] = pretrained.prefix
        values["pretrained_checkpoint"] = pretrained.checkpoint
    return values


def training_job_request(
    props: RunProps,
    name: str,
    *,
    data_prefix: str,
    tags: Mapping[str, str],
    hyper: Mapping[str, str],
    algorithm: str,
) -> dict[str, Any]:
    t = props.trainer
    return {
        "TrainingJobName": name,
        "HyperParameters": dict(hyper),
        "AlgorithmSpecification": {
            "TrainingImage": t.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions(algorithm),
        },
        "Environment": dict(TRAINER_ENVIRONMENT),
        "RoleArn": t.role_arn,
        "OutputDataConfig": {"S3OutputPath": f"s3://{props.bucket}/{data_prefix}/"},
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
    """A job with our deterministic name must also train our experiment's data: its run's
    prefix (``<prefix>/runs/<job name>``), or the experiment prefix itself (runs started before
    runs had their own prefix)."""
    hyper = job.get("HyperParameters") or {}
    name = str(job.get("TrainingJobName", ""))
    return hyper.get("s3_bucket") == bucket and hyper.get("s3_prefix") in (
        run_prefix(prefix, name),
        prefix,
    )


def check_ours(job: Mapping[str, Any], props: RunProps) -> None:
    if not is_ours(job, props.bucket, props.prefix):
        hyper = job.get("HyperParameters") or {}
        raise StartError(
            f"training job {job.get('TrainingJobName')} exists but trains "
            f"s3://{hyper.get('s3_bucket')}/{hyper.get('s3_prefix')}, not "
            f"s3://{props.bucket}/{run_prefix(props.prefix, str(job.get('TrainingJobName')))}; "
            "refusing to adopt it"
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
