"""AWS side of the CLI: find a deployed experiment, read its state and metrics, stop its run.

The experiment stack ``DeepRacerRollouts-<name>`` exports ``RunId`` (= the SageMaker training job
name = the Batch array job name; RoboMaker jobs carry tag ``rollouts:run``), ``Backend``,
``DataBucket``, ``ExperimentPrefix``, ``JobQueue`` (batch), ``SimulationJobBatchArn``
(robomaker), ``VideoStreams`` and ``RolloutCount``.

Stopping reuses the fan-out Lambda's own stop functions (``lambda/fanout``: the same "stop
everything of run X" logic the stack deletion runs), so there is one implementation of it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from rollouts import metrics as m
from rollouts.naming import run_prefix
from rollouts.plan import experiment_prefix, metrics_key, stack_name

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDA_DIR = REPO_ROOT / "lambda"
ROBOMAKER_MODEL_DIR = LAMBDA_DIR / "fanout" / "botocore_data"
BATCH_DESCRIBE_LIMIT = 100


class OperateError(Exception):
    """An AWS-side problem, with the exit code to use (1 failure, 2 bad input)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class MetricsFetchError(m.MetricsError):
    """Metrics could not be fetched from AWS: a failure (exit 1), or bad AWS settings such as
    an unknown profile (exit 2, carried over from the ``OperateError``)."""

    aws = True

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- clients


class Aws:
    """boto3 clients built on first use (tests pre-fill ``clients``)."""

    def __init__(
        self,
        region: str | None = None,
        profile: str | None = None,
        clients: Mapping[str, Any] | None = None,
    ) -> None:
        # --region, else AWS_REGION (what every error and --help names; botocore itself reads
        # only AWS_DEFAULT_REGION and the profile, which still apply when neither is set).
        self.region = region or os.environ.get("AWS_REGION") or None
        self.profile = profile
        self.clients: dict[str, Any] = dict(clients or {})
        self._session: Any = None

    def session(self) -> Any:
        if self._session is None:
            import boto3  # noqa: PLC0415
            import botocore.session  # noqa: PLC0415
            from botocore.exceptions import BotoCoreError  # noqa: PLC0415

            try:
                core = botocore.session.get_session()
                if ROBOMAKER_MODEL_DIR.is_dir():
                    # AWS retired RoboMaker on 2025-09-10 and botocore dropped its service
                    # model after 1.40.60; `make setup` (scripts/fetch_robomaker_model.py) puts
                    # that final model here so a RoboMaker client can still be built.
                    loader = core.get_component("data_loader")
                    if str(ROBOMAKER_MODEL_DIR) not in loader.search_paths:
                        loader.search_paths.append(str(ROBOMAKER_MODEL_DIR))
                self._session = boto3.session.Session(
                    botocore_session=core, region_name=self.region, profile_name=self.profile
                )
            except BotoCoreError as error:
                raise _setup_error(error, self.profile) from None
        return self._session

    def client(self, service: str) -> Any:
        """The client of ``service``; AWS configuration problems (unknown profile, no region,
        unreadable config file) become an ``OperateError`` here, whichever call builds it first.
        """
        if service not in self.clients:
            from botocore.exceptions import BotoCoreError, UnknownServiceError  # noqa: PLC0415

            try:
                self.clients[service] = self.session().client(service)
            except UnknownServiceError:
                raise OperateError(
                    f"this botocore has no {service} client; for RoboMaker run `make setup` "
                    f"(it puts the final RoboMaker model in {ROBOMAKER_MODEL_DIR})"
                ) from None
            except BotoCoreError as error:
                raise _setup_error(error, self.profile) from None
        return self.clients[service]


def _setup_error(error: Exception, profile: str | None) -> OperateError:
    """A clear message (and exit code) for a botocore error raised while building a client."""
    from botocore.exceptions import (  # noqa: PLC0415
        ConfigParseError,
        InvalidConfigError,
        InvalidRegionError,
        NoRegionError,
        ProfileNotFound,
    )

    if isinstance(error, ProfileNotFound):
        name = getattr(error, "kwargs", {}).get("profile") or profile
        origin = "--profile" if profile else "AWS_PROFILE"
        return OperateError(
            f"AWS profile {name!r} ({origin}) is not in your AWS config or credentials "
            "file (`aws configure list-profiles` shows the ones there)",
            2,
        )
    if isinstance(error, NoRegionError):
        return OperateError("no AWS region: pass --region or set AWS_REGION", 2)
    if isinstance(error, InvalidRegionError):
        return OperateError(f"bad AWS region: {error}", 2)
    if isinstance(error, ConfigParseError | InvalidConfigError):
        return OperateError(f"AWS configuration: {error}", 2)
    return OperateError(f"AWS setup failed: {error}")


def _aws_call(what: str, fn: Callable[[], Any]) -> Any:
    """Run one AWS call, turning credential/network errors into OperateError."""
    from botocore.exceptions import (  # noqa: PLC0415
        BotoCoreError,
        ClientError,
        NoCredentialsError,
    )

    try:
        return fn()
    except NoCredentialsError:
        raise OperateError(
            "no AWS credentials found: configure a profile (--profile) or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        ) from None
    except ClientError as error:
        info = error.response.get("Error", {})
        raise OperateError(f"{what}: {info.get('Code')}: {info.get('Message')}") from None
    except BotoCoreError as error:
        raise OperateError(f"{what}: {error}") from None


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _time(value: Any) -> str | None:
    """ISO 8601 UTC from a datetime or Batch's epoch milliseconds."""
    if value in (None, "", 0):
        return None
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


# ----------------------------------------------------------------------------- the stack


@dataclass(frozen=True)
class Deployed:
    experiment: str
    stack: str
    stack_status: str
    outputs: dict[str, str]
    tags: dict[str, str]
    run: str | None = None  # a run chosen with --run; None: the stack's current run

    def output(self, key: str) -> str | None:
        value = self.outputs.get(key)
        return None if value in (None, "", "-") else value

    @property
    def run_id(self) -> str:
        if self.run:
            return self.run
        run_id = self.output("RunId")
        if not run_id:
            raise OperateError(
                f"stack {self.stack} has no RunId output ({self.stack_status}): "
                "is the deploy finished?"
            )
        return run_id

    @property
    def backend(self) -> str:
        return self.output("Backend") or "batch"

    @property
    def bucket(self) -> str | None:
        return self.output("DataBucket")

    @property
    def prefix(self) -> str:
        return (self.output("ExperimentPrefix") or experiment_prefix(self.experiment)).rstrip("/")

    @property
    def data_prefix(self) -> str:
        """Where the chosen run keeps its data (README, "One prefix per run")."""
        return run_prefix(self.prefix, self.run_id)

    @property
    def rollout_count(self) -> int:
        try:
            return max(int(self.output("RolloutCount") or "1"), 1)
        except ValueError:
            return 1

    @property
    def video_streams(self) -> list[str]:
        return [s for s in (self.output("VideoStreams") or "").split(",") if s.strip()]


def find_stack(aws: Aws, experiment: str, run: str | None = None) -> Deployed:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    name = stack_name(experiment)
    cfn = aws.client("cloudformation")
    try:
        stacks = _aws_call(
            "cloudformation:DescribeStacks", lambda: _describe_stacks(cfn, name, ClientError)
        )
    except _StackMissingError:
        raise OperateError(
            f"experiment {experiment!r} is not deployed: no stack {name} in "
            f"region {cfn.meta.region_name} (wrong --region/--profile?)"
        ) from None
    stack = stacks[0]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    tags = {t["Key"]: t["Value"] for t in stack.get("Tags", [])}
    tagged = tags.get("rollouts:experiment")
    if tagged and tagged != experiment:
        raise OperateError(f"stack {name} belongs to experiment {tagged!r}, not {experiment!r}")
    if run is not None and not run.startswith(f"{experiment}-"):
        raise OperateError(
            f"run {run!r} is not a run of experiment {experiment!r} (its ids start {experiment}-)",
            2,
        )
    return Deployed(experiment, name, str(stack.get("StackStatus", "")), outputs, tags, run)


class _StackMissingError(Exception):
    pass


def _describe_stacks(cfn: Any, name: str, client_error: type[Exception]) -> list[dict[str, Any]]:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except client_error as error:
        if _error_code(error) == "ValidationError":
            raise _StackMissingError from None
        raise
    if not stacks or stacks[0].get("StackStatus") == "DELETE_COMPLETE":
        raise _StackMissingError
    return list(stacks)


# ----------------------------------------------------------------------------- status


def trainer_status(aws: Aws, name: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    sagemaker = aws.client("sagemaker")

    def describe() -> dict[str, Any] | None:
        try:
            return dict(sagemaker.describe_training_job(TrainingJobName=name))
        except ClientError as error:
            if _error_code(error) in ("ValidationException", "ResourceNotFound"):
                return None
            raise

    job = _aws_call("sagemaker:DescribeTrainingJob", describe)
    if job is None:
        return {
            "name": name,
            "state": "NOT FOUND",
            "detail": None,
            "started": None,
            "ended": None,
            "reason": None,
        }
    return {
        "name": name,
        "state": job.get("TrainingJobStatus"),
        "detail": job.get("SecondaryStatus"),
        "started": _time(job.get("TrainingStartTime") or job.get("CreationTime")),
        "ended": _time(job.get("TrainingEndTime")),
        "reason": job.get("FailureReason"),
    }


def _rollout(  # noqa: PLR0917 (a row constructor)
    worker: int,
    job_id: str | None,
    state: str | None,
    started: Any = None,
    stopped: Any = None,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "worker": worker,
        "job_id": job_id,
        "state": state or "NOT FOUND",
        "started": _time(started),
        "stopped": _time(stopped),
        "reason": reason,
        "last_episode": None,
    }


def batch_rollouts(aws: Aws, deployed: Deployed) -> list[dict[str, Any]]:
    count = deployed.rollout_count
    queue = deployed.output("JobQueue")
    if not queue:
        raise OperateError(
            f"stack {deployed.stack} has no JobQueue output: cannot find the Batch rollouts"
        )
    batch = aws.client("batch")
    run_id = deployed.run_id

    def list_jobs() -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "jobQueue": queue,
            "filters": [{"name": "JOB_NAME", "values": [run_id]}],
        }
        while True:
            page = batch.list_jobs(**kwargs)
            jobs += page.get("jobSummaryList", [])
            if not page.get("nextToken"):
                return jobs
            kwargs["nextToken"] = page["nextToken"]

    jobs = [j for j in _aws_call("batch:ListJobs", list_jobs) if j.get("jobName") == run_id]
    if not jobs:
        return [_rollout(i, None, "NOT FOUND") for i in range(count)]
    parent = max(jobs, key=lambda j: j.get("createdAt", 0))
    parent_id = str(parent["jobId"])
    if count == 1 and not parent.get("arrayProperties"):
        described = _describe_batch(batch, [parent_id])
        job = described.get(parent_id, parent)
        return [
            _rollout(
                0,
                parent_id,
                job.get("status"),
                job.get("startedAt"),
                job.get("stoppedAt"),
                job.get("statusReason"),
            )
        ]
    ids = [f"{parent_id}:{i}" for i in range(count)]
    described = _describe_batch(batch, ids)
    result = []
    for i, child_id in enumerate(ids):
        job = described.get(child_id)
        if job is None:
            # Children not materialised yet: they share the parent's (pending) state.
            result.append(_rollout(i, child_id, parent.get("status")))
        else:
            result.append(
                _rollout(
                    i,
                    child_id,
                    job.get("status"),
                    job.get("startedAt"),
                    job.get("stoppedAt"),
                    job.get("statusReason"),
                )
            )
    return result


def _describe_batch(batch: Any, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), BATCH_DESCRIBE_LIMIT):
        chunk = list(ids[start : start + BATCH_DESCRIBE_LIMIT])
        page = _aws_call("batch:DescribeJobs", partial(batch.describe_jobs, jobs=chunk))
        for job in page.get("jobs", []):
            found[str(job["jobId"])] = job
    return found


def robomaker_rollouts(aws: Aws, deployed: Deployed) -> list[dict[str, Any]]:
    count = deployed.rollout_count
    # The stack's output names the current run's batch only.
    arn = (
        deployed.output("SimulationJobBatchArn")
        if deployed.run in (None, deployed.output("RunId"))
        else None
    )
    if not arn:
        return [_rollout(i, None, "NOT FOUND") for i in range(count)]
    robomaker = aws.client("robomaker")
    batch = _aws_call(
        "robomaker:DescribeSimulationJobBatch",
        lambda: robomaker.describe_simulation_job_batch(batch=arn),
    )
    arns = [str(r["arn"]) for r in batch.get("createdRequests", []) if r.get("arn")]
    jobs: list[dict[str, Any]] = []
    for start in range(0, len(arns), 100):
        chunk = arns[start : start + 100]
        jobs += _aws_call(
            "robomaker:BatchDescribeSimulationJob",
            partial(robomaker.batch_describe_simulation_job, jobs=chunk),
        ).get("jobs", [])
    result: dict[int, dict[str, Any]] = {}
    for position, job in enumerate(jobs):
        index = _rollout_idx(job, position)
        result[index] = _rollout(
            index,
            job.get("arn"),
            job.get("status"),
            job.get("lastStartedAt"),
            None,
            job.get("failureReason") or job.get("failureCode"),
        )
    pending = batch.get("status") if not jobs else None
    return [result.get(i) or _rollout(i, None, pending or "NOT FOUND") for i in range(count)]


def _rollout_idx(job: Mapping[str, Any], default: int) -> int:
    for app in job.get("simulationApplications", []) or []:
        env = (app.get("launchConfig") or {}).get("environmentVariables") or {}
        if str(env.get("ROLLOUT_IDX", "")).isdigit():
            return int(env["ROLLOUT_IDX"])
    return default


def last_episodes(
    aws: Aws, bucket: str, prefix: str, count: int
) -> tuple[dict[int, dict[str, Any]], int | None]:
    """Last metrics row and episode count of each worker (absent files are simply missing from
    the result)."""
    s3 = aws.client("s3")
    episodes = _s3_hyperparameters(s3, bucket, prefix)
    found: dict[int, dict[str, Any]] = {}
    for worker in range(count):
        key = f"{prefix}/{metrics_key(worker)}"
        data = _s3_get(s3, bucket, key)
        if data is None:
            continue
        try:
            parsed = m.parse(data, source=f"s3://{bucket}/{key}", worker=worker)
        except m.MetricsError as error:
            found[worker] = {"error": str(error)}
            continue
        training = [e for e in parsed.episodes if e.episode is not None]
        if not training:
            continue
        last = training[-1]
        share = m.episodes_for_worker(episodes, count, worker) if episodes else 0
        found[worker] = {
            "episodes": sum(1 for e in training if e.phase == "training"),
            "episode": last.episode,
            "iteration": (last.episode - 1) // share + 1 if share and last.episode else None,
            "phase": last.phase,
            "status": last.status,
            "progress": last.progress,
            "reward": last.reward,
        }
    return found, episodes


def _s3_get(s3: Any, bucket: str, key: str) -> bytes | None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    def get() -> bytes | None:
        try:
            return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as error:
            if _error_code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    return _aws_call(f"s3:GetObject s3://{bucket}/{key}", get)


def _s3_hyperparameters(s3: Any, bucket: str, prefix: str) -> int | None:
    for key in (f"{prefix}/hyperparameters.json", f"{prefix}/ip/hyperparameters.json"):
        data = _s3_get(s3, bucket, key)
        if data is not None:
            try:
                return m.hyperparameter_episodes(data, f"s3://{bucket}/{key}")
            except m.MetricsError:
                return None
    return None


def checkpoints(aws: Aws, bucket: str, prefix: str) -> dict[str, Any] | None:
    """Best and last checkpoint of a run from ``model/deepracer_checkpoints.json`` (rollout 0
    writes it once the trainer saved a checkpoint: deepracer-simapp
    bundle/markov/metrics/s3_metrics.py), or None when there is none yet."""
    key = f"{prefix}/model/deepracer_checkpoints.json"
    data = _s3_get(aws.client("s3"), bucket, key)
    if data is None:
        return None
    try:
        document = json.loads(data)
    except ValueError:
        return {"error": f"s3://{bucket}/{key} is not JSON"}
    result: dict[str, Any] = {}
    for kind in ("best", "last"):
        entry = document.get(f"{kind}_checkpoint") if isinstance(document, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        result[kind] = name if isinstance(name, str) else None
        result[f"{kind}_metric"] = entry.get("avg_eval_metric") if isinstance(entry, dict) else None
    return result


def collect_status(aws: Aws, experiment: str, run: str | None = None) -> dict[str, Any]:
    deployed = find_stack(aws, experiment, run)
    run_id = deployed.run_id
    trainer = trainer_status(aws, run_id)
    if deployed.backend == "robomaker":
        rollouts = robomaker_rollouts(aws, deployed)
    else:
        rollouts = batch_rollouts(aws, deployed)
    episodes = None
    saved = None
    if deployed.bucket:
        last, episodes = last_episodes(
            aws, deployed.bucket, deployed.data_prefix, deployed.rollout_count
        )
        for rollout in rollouts:
            rollout["last_episode"] = last.get(rollout["worker"])
        saved = checkpoints(aws, deployed.bucket, deployed.data_prefix)
    evaluations: list[dict[str, Any]] = []
    supervision: dict[str, Any] | None = None
    if deployed.bucket:
        evaluations = evaluation_status(aws, deployed.bucket, deployed.data_prefix)
        supervision = supervisor_record(aws, deployed.bucket, experiment, run_id)
    states: dict[str, int] = {}
    for rollout in rollouts:
        states[rollout["state"]] = states.get(rollout["state"], 0) + 1
    return {
        "experiment": experiment,
        "stack": {"name": deployed.stack, "status": deployed.stack_status},
        "run_id": run_id,
        "current_run": deployed.output("RunId"),
        "backend": deployed.backend,
        "data": f"s3://{deployed.bucket}/{deployed.data_prefix}/" if deployed.bucket else None,
        "checkpoints": saved,
        "episodes_per_iteration": episodes,
        "trainer": trainer,
        "rollouts": rollouts,
        "rollout_states": dict(sorted(states.items())),
        "evaluations": evaluations,
        "outcome": (supervision or {}).get("outcome"),
        "supervisor_actions": (supervision or {}).get("actions") or [],
        "restarts": (supervision or {}).get("restarts") or {},
        "video_streams": deployed.video_streams,
        "checked_at": _time(datetime.now(tz=UTC)),
    }


def supervisor_record(aws: Aws, bucket: str, experiment: str, run_id: str) -> dict[str, Any] | None:
    """What the run supervisor recorded of the run (its outcome and actions with their reasons;
    lambda/supervisor/records.py writes it). None: nothing yet; unreadable: said so."""
    key = f"{experiment_prefix(experiment)}/supervisor/{run_id}.json"
    body = _s3_get(aws.client("s3"), bucket, key)
    if body is None:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return {"outcome": {"kind": "unknown", "reason": f"s3://{bucket}/{key} is not JSON"}}
    return document if isinstance(document, dict) else None


# ----------------------------------------------------------------------------- evaluations


def evaluation_records(aws: Aws, bucket: str, run_prefix: str) -> list[dict[str, Any]]:
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
    found = evaluation_records(aws, bucket, run_prefix)
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


# ----------------------------------------------------------------------------- stop


def fanout_modules() -> dict[str, ModuleType]:
    """The fan-out Lambda's modules (``lambda/fanout``), which own the stop and planning logic.

    ``lambda/`` is the Lambda asset root, not an installed package, so it is put on
    ``sys.path`` (appended: it never shadows installed packages).
    """
    if str(LAMBDA_DIR) not in sys.path and (LAMBDA_DIR / "fanout" / "__init__.py").is_file():
        sys.path.append(str(LAMBDA_DIR))
    try:
        from fanout import (  # noqa: PLC0415
            batch_backend,
            errors,
            files,
            naming,
            plan,
            pretrained,
            props,
            retry,
            robomaker_backend,
            start_plan,
            trainer,
        )
    except ImportError as error:
        raise OperateError(
            f"cannot load the fan-out stop logic from {LAMBDA_DIR}/fanout "
            f"({error}); run the CLI from a checkout of the repository"
        ) from None
    return {
        "batch": batch_backend,
        "robomaker": robomaker_backend,
        "trainer": trainer,
        "retry": retry,
        "errors": errors,
        "files": files,
        "naming": naming,
        "plan": plan,
        "pretrained": pretrained,
        "props": props,
        "start_plan": start_plan,
    }


@dataclass(frozen=True)
class StopTarget:
    experiment: str
    run_id: str
    backend: str
    queue: str | None
    simulation_batch: str | None
    rollout_count: int
    stack: str
    bucket: str | None = None
    run_prefix: str | None = None


def stop_target(aws: Aws, experiment: str) -> StopTarget:
    deployed = find_stack(aws, experiment)
    return StopTarget(
        experiment,
        deployed.run_id,
        deployed.backend,
        deployed.output("JobQueue"),
        deployed.output("SimulationJobBatchArn"),
        deployed.rollout_count,
        deployed.stack,
        deployed.bucket,
        deployed.data_prefix,
    )


def describe_stop(target: StopTarget) -> str:
    if target.backend == "robomaker":
        rollouts = (
            f"the RoboMaker simulation job batch(es) of run {target.run_id}"
            f"{' (' + target.simulation_batch + ')' if target.simulation_batch else ''}"
        )
    else:
        rollouts = (
            f"the AWS Batch job(s) named {target.run_id} in {target.queue or '(unknown queue)'}"
            f" ({target.rollout_count} rollout(s))"
        )
    return (
        f"This stops run {target.run_id} of experiment {target.experiment} "
        f"(stack {target.stack}):\n"
        f"  trainer:  SageMaker training job {target.run_id}\n"
        f"  rollouts: {rollouts}\n"
        f"  and the run's evaluations that are still running\n"
        "Data in S3 is kept; the stack stays until `cdk destroy`."
    )


def stop(aws: Aws, target: StopTarget, *, budget_seconds: float = 120.0) -> dict[str, Any]:
    """Stop rollouts, then the trainer, of the target's run; never raises for AWS errors:
    every part is attempted and failures are listed in ``errors``."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    fanout = fanout_modules()
    retrier = fanout["retry"].Retrier(budget_seconds=budget_seconds)
    failures = (ClientError, BotoCoreError, fanout["errors"].FanoutError, OperateError)
    report: dict[str, Any] = {
        "experiment": target.experiment,
        "run_id": target.run_id,
        "backend": target.backend,
        "trainer": "not checked",
        "rollouts": [],
        "errors": [],
    }
    try:
        if target.backend == "robomaker":
            known = [target.simulation_batch] if target.simulation_batch else []
            report["rollouts"] = fanout["robomaker"].stop(
                aws.client("robomaker"), retrier, target.run_id, known
            )
        elif target.queue:
            report["rollouts"] = fanout["batch"].stop(
                aws.client("batch"), retrier, target.queue, target.run_id
            )
        else:
            report["errors"].append("rollouts: the stack has no JobQueue output")
    except failures as error:
        report["errors"].append(f"rollouts: {_describe(error)}")
    try:
        report["trainer"] = fanout["trainer"].stop(aws.client("sagemaker"), retrier, target.run_id)
    except failures as error:
        report["errors"].append(f"trainer: {_describe(error)}")
    report["evaluations"] = []
    if target.backend == "batch" and target.queue and target.bucket and target.run_prefix:
        try:
            for record in evaluation_records(aws, target.bucket, target.run_prefix):
                if record.get("jobName"):
                    report["evaluations"] += fanout["batch"].stop(
                        aws.client("batch"), retrier, target.queue, record["jobName"]
                    )
        except failures as error:
            report["errors"].append(f"evaluations: {_describe(error)}")
    return report


def _describe(error: Exception) -> str:
    code = _error_code(error)
    return f"{code}: {error}" if code else str(error)


def format_stop(report: Mapping[str, Any]) -> str:
    trainer = report["trainer"]
    trainer_text = {"stopping": "stop requested", "absent": "not found (nothing to stop)"}.get(
        trainer, f"already {trainer}"
    )
    rollouts = report["rollouts"]
    lines = [
        f"run {report['run_id']} of {report['experiment']}:",
        f"  trainer:  {trainer_text}",
        f"  rollouts: {len(rollouts)} active job(s) stopped"
        + (f" ({', '.join(rollouts)})" if rollouts else " (none were running)"),
    ]
    evaluations = report.get("evaluations") or []
    if evaluations:
        lines.append(f"  evaluations: {len(evaluations)} job(s) stopped ({', '.join(evaluations)})")
    for error in report["errors"]:
        lines.append(f"  error: {error}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- metrics sources


@dataclass
class LoadedMetrics:
    workers: list[m.WorkerMetrics]
    description: str
    title: str
    hyperparameters: tuple[int, str] | None = None  # (episodes per iteration, where from)
    worker_count: int | None = None


def load_metrics(
    sources: Sequence[str],
    aws: Callable[[], Aws],
    update: Callable[[str], None],
    run: str | None = None,
) -> LoadedMetrics:
    """Metrics from an experiment name, an ``s3://bucket/prefix`` or local files/folders
    (``aws`` builds the clients, only when AWS is needed)."""
    if len(sources) == 1 and sources[0].startswith("s3://"):
        bucket, _, prefix = sources[0][len("s3://") :].partition("/")
        if not bucket:
            raise m.MetricsError(f"{sources[0]}: expected s3://bucket/prefix")
        return _load_s3(aws(), bucket, prefix.strip("/"), sources[0], None, update)
    paths = [Path(s) for s in sources]
    if len(sources) == 1 and not paths[0].exists() and _looks_like_name(sources[0]):
        return load_experiment_metrics(aws(), sources[0], update, run)
    if any(s.startswith("s3://") for s in sources):
        raise m.MetricsError("give one s3:// prefix, or local files, not both")
    return _load_local(paths, update)


def _looks_like_name(text: str) -> bool:
    from rollouts.spec import NAME_PATTERN  # noqa: PLC0415

    return bool(NAME_PATTERN.match(text))


def load_experiment_metrics(
    aws: Aws, experiment: str, update: Callable[[str], None], run: str | None = None
) -> LoadedMetrics:
    try:
        deployed = find_stack(aws, experiment, run)
    except OperateError as error:
        hint = " (for local files, check the path exists)" if error.code == 1 else ""
        raise MetricsFetchError(f"{error}{hint}", error.code) from None
    if not deployed.bucket:
        raise MetricsFetchError(f"stack {deployed.stack} has no DataBucket output")
    return _load_s3(
        aws,
        deployed.bucket,
        deployed.data_prefix,
        experiment,
        deployed.rollout_count,
        update,
    )


def _load_s3(  # noqa: PLR0917
    aws: Aws, bucket: str, prefix: str, label: str, count: int | None, update: Callable[[str], None]
) -> LoadedMetrics:
    try:
        s3 = aws.client("s3")
        keys: list[tuple[int, str]] = []

        def list_keys() -> None:
            for folder in (
                f"{prefix}/metrics/" if prefix else "metrics/",
                f"{prefix}/" if prefix else "",
            ):
                paginator = s3.get_paginator("list_objects_v2")
                for page in paginator.paginate(Bucket=bucket, Prefix=folder, Delimiter="/"):
                    for item in page.get("Contents", []):
                        index = m.worker_index(item["Key"].rsplit("/", 1)[-1])
                        if index is not None and all(i != index for i, _ in keys):
                            keys.append((index, item["Key"]))

        def list_legs() -> None:
            # An evaluation's prefix: one folder per leg, each with its metrics.json.
            paginator = s3.get_paginator("list_objects_v2")
            legs = sorted(
                item["Key"]
                for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/")
                for item in page.get("Contents", [])
                if item["Key"].count("/") == prefix.count("/") + 2
                and item["Key"].endswith(f"/{m.EVALUATION_LEG_FILE}")
            )
            keys.extend(enumerate(legs, start=len(keys)))

        _aws_call("s3:ListObjectsV2", list_keys)
        if not keys and prefix:
            _aws_call("s3:ListObjectsV2", list_legs)
        if not keys:
            raise m.MetricsError(
                f"s3://{bucket}/{prefix}: no metrics files yet (looked for "
                "metrics/TrainingMetrics*.json, training_metrics.json and evaluation legs "
                f"*/{m.EVALUATION_LEG_FILE})"
            )
        workers = []
        for n, (index, key) in enumerate(sorted(keys), start=1):
            update(f"{n}/{len(keys)} s3://{bucket}/{key}")
            data = _s3_get(s3, bucket, key)
            if data is None:
                continue
            workers.append(m.parse(data, source=f"s3://{bucket}/{key}", worker=index))
        hyper = _s3_hyperparameters(s3, bucket, prefix)
    except OperateError as error:
        raise MetricsFetchError(str(error), error.code) from None
    return LoadedMetrics(
        workers=workers,
        description=label,
        title=label,
        hyperparameters=(hyper, f"s3://{bucket}/{prefix}/hyperparameters.json") if hyper else None,
        worker_count=count,
    )


def _load_local(paths: Sequence[Path], update: Callable[[str], None]) -> LoadedMetrics:
    files = m.local_metrics_files(paths)
    workers = []
    for n, (index, path) in enumerate(files, start=1):
        update(f"{n}/{len(files)} {path}")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise m.MetricsError(f"{path}: cannot be read: {error.strerror}") from None
        workers.append(m.parse(data, source=str(path), worker=index))
    hyper = None
    folders = []
    for _, path in files:
        for folder in (path.parent, path.parent.parent):
            if folder not in folders:
                folders.append(folder)
    # The same places as in S3 (_s3_hyperparameters): the experiment prefix's own copy, then the
    # one the trainer publishes under ip/ (so a downloaded prefix or DRfC model folder works).
    candidates = [
        f / name for f in folders for name in ("hyperparameters.json", "ip/hyperparameters.json")
    ]
    for candidate in candidates:
        if candidate.is_file():
            try:
                data = candidate.read_bytes()
            except OSError as error:
                raise m.MetricsError(f"{candidate}: cannot be read: {error.strerror}") from None
            hyper = (m.hyperparameter_episodes(data, str(candidate)), str(candidate))
            break
    label = ", ".join(str(p) for p in paths)
    return LoadedMetrics(
        workers=workers,
        description=label,
        title=paths[0].name if len(paths) == 1 else "metrics",
        hyperparameters=hyper,
    )


def s3_run_reader(
    aws: Aws, experiment: str, run: str | None
) -> tuple[Callable[[str], bytes | None], Callable[[], list[str]], str]:
    """Read a deployed run's prefix: (read key, list model/ keys, s3:// location)."""
    try:
        deployed = find_stack(aws, experiment, run)
    except OperateError as error:
        raise MetricsFetchError(str(error), error.code) from None
    if not deployed.bucket:
        raise MetricsFetchError(f"stack {deployed.stack} has no DataBucket output")
    s3 = aws.client("s3")
    bucket, prefix = deployed.bucket, deployed.data_prefix

    def read(key: str) -> bytes | None:
        return _s3_get(s3, bucket, f"{prefix}/{key}")

    def list_model() -> list[str]:
        def names() -> list[str]:
            found = []
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{prefix}/model/"
            ):
                found += [item["Key"].rsplit("/", 1)[-1] for item in page.get("Contents", [])]
            return sorted(found)

        return _aws_call("s3:ListObjectsV2", names)

    return read, list_model, f"s3://{bucket}/{prefix}"
