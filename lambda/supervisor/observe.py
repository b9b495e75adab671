"""Read what should run and what does run into an :class:`Observed` (the supervisor's only reads).

Order matters: jobs are read first and stacks after, so the stacks seen are never older than the
jobs. A job started by a stack operation that began after the jobs were read is then seen with
its stack in that operation (the supervisor waits), never with a stack that looks settled.

API calls grow with what runs, not with history: CloudFormation stacks (one paged call), the
platform's job queues (one call), five ListJobs per experiment queue (the active states),
SageMaker Search for training jobs in progress and ended in the last ``ENDED_WINDOW_SECONDS``,
and per run with something running: its record, its stack's resources, its failed workers and,
while it trains, one listing of its metrics.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from fanout import naming
from fanout.naming import TAG_EXPERIMENT

from . import records
from .model import (
    BATCH_ACTIVE,
    STABLE,
    JobView,
    Observed,
    Record,
    Rules,
    RunView,
    StackView,
    TrainerView,
    WorkerFailure,
)

LOG = logging.getLogger(__name__)

TAG_PLATFORM = "rollouts:platform"
RUN_RESOURCE_TYPE = "Custom::RolloutsRun"
SUPERVISION_OUTPUT = "Supervision"
STACK_PREFIX = "DeepRacerRollouts-"
# Ended training jobs are looked at this long after they end (a lost event, a late outcome): 60
# sweeps. Beyond it, an ended run counts only while a job of it still runs.
ENDED_WINDOW_SECONDS = 3600
RUN_ID = re.compile(r"^([a-z][a-z0-9-]{0,39})-([0-9a-f]{8})$")
# Reasons the project's own stops give (fan-out, CLI, supervisor): such a job did not fail.
OWN_STOP_REASONS = ("stopped by", "stopped:", "stopped while", "rollouts supervisor")
RESTART_NAME = re.compile(r"^(?P<run>.+-[0-9a-f]{8})-w(?P<worker>\d+)-r(?P<attempt>\d+)$")


@dataclass(frozen=True)
class Settings:
    """The platform the supervisor watches (its environment, set by the platform stack)."""

    platform: str
    bucket: str
    topic_arn: str = ""

    @classmethod
    def from_json(cls, text: str) -> Settings:
        raw = json.loads(text)
        return cls(
            platform=str(raw["platform"]),
            bucket=str(raw["bucket"]),
            topic_arn=str(raw.get("topicArn", "")),
        )


def experiment_prefix(experiment: str) -> str:
    return f"experiments/{experiment}"


def run_prefix(run_id: str) -> str:
    """Where run ``run_id`` keeps its data (the fan-out's own rule, fanout/naming.py)."""
    return naming.run_prefix(experiment_prefix(run_id.rsplit("-", 1)[0]), run_id)


def _seconds(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Batch reports milliseconds since the epoch.
        return float(value) / 1000.0
    return None


def _tags(pairs: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None) -> dict[str, str]:
    if isinstance(pairs, Mapping):
        return {str(k): str(v) for k, v in pairs.items()}
    return {str(p.get("Key")): str(p.get("Value")) for p in pairs or []}


def parse_rules(text: str | None) -> Rules:
    """The ``Supervision`` output of an experiment stack; defaults for what it lacks or garbles
    (a garbled output must not stop anyone's run: the defaults are the documented ones)."""
    if not text:
        return Rules()
    try:
        raw = json.loads(text)
        budget = raw.get("budgetUsd")
        return Rules(
            on_failure=raw.get("onFailure", "restart")
            if raw.get("onFailure") in ("restart", "stop", "ignore")
            else "restart",
            max_restarts=max(0, int(raw.get("maxRestarts", 3))),
            stall_minutes=max(0, int(raw.get("stallMinutes", 30))),
            budget_usd=None if budget in (None, "") else float(budget),
            trainer_usd_per_hour=float(raw.get("trainerUsdPerHour", 0.0)),
            rollout_usd_per_hour=float(raw.get("rolloutUsdPerHour", 0.0)),
        )
    except (ValueError, TypeError, AttributeError):
        LOG.warning("Supervision output %r does not parse: defaults apply", text[:200])
        return Rules()


class Observer:
    """Reads one observation. ``scope``: only these experiments (an event names one)."""

    def __init__(self, clients: Any, settings: Settings, *, now: float) -> None:
        self.clients = clients
        self.settings = settings
        self.now = now
        self.calls = 0
        self._lock = threading.Lock()

    def count(self) -> None:
        with self._lock:
            self.calls += 1

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        self.count()
        return fn(**kwargs)

    # ------------------------------------------------------------------ jobs

    def queues(self, scope: frozenset[str] | None) -> dict[str, str]:
        """experiment -> job queue ARN, of this platform's experiment queues."""
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"maxResults": 100}
            if token:
                kwargs["nextToken"] = token
            page = self._call(self.clients.batch.describe_job_queues, **kwargs)
            for queue in page.get("jobQueues", []):
                tags = queue.get("tags") or {}
                experiment = tags.get(TAG_EXPERIMENT)
                if not experiment or tags.get(TAG_PLATFORM) != self.settings.platform:
                    continue
                if scope is None or experiment in scope:
                    found[experiment] = str(queue["jobQueueArn"])
            token = page.get("nextToken")
            if not token:
                return found

    def active_jobs(self, experiment: str, queue: str) -> list[tuple[str, JobView]]:
        """(run id, job) of every active job in the experiment's queue."""
        jobs: list[tuple[str, JobView]] = []
        for status in sorted(BATCH_ACTIVE):
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"jobQueue": queue, "jobStatus": status}
                if token:
                    kwargs["nextToken"] = token
                page = self._call(self.clients.batch.list_jobs, **kwargs)
                for summary in page.get("jobSummaryList", []):
                    parsed = classify(experiment, summary)
                    if parsed is not None:
                        jobs.append(parsed)
                token = page.get("nextToken")
                if not token:
                    break
        return jobs

    def trainers(self, scope: frozenset[str] | None) -> dict[str, TrainerView]:
        """run id -> trainer, for the platform's training jobs in progress or recently ended."""
        found: dict[str, TrainerView] = {}
        searches = [
            [{"Name": "TrainingJobStatus", "Operator": "Equals", "Value": "InProgress"}],
            [
                {"Name": "TrainingJobStatus", "Operator": "NotEquals", "Value": "InProgress"},
                {
                    "Name": "LastModifiedTime",
                    "Operator": "GreaterThan",
                    "Value": datetime.fromtimestamp(self.now - ENDED_WINDOW_SECONDS).isoformat(),
                },
            ],
        ]
        for filters in searches:
            expression = {
                "Filters": [{"Name": f"Tags.{TAG_EXPERIMENT}", "Operator": "Exists"}, *filters]
            }
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "Resource": "TrainingJob",
                    "SearchExpression": expression,
                    "MaxResults": 100,
                }
                if token:
                    kwargs["NextToken"] = token
                page = self._call(self.clients.sagemaker.search, **kwargs)
                for result in page.get("Results", []):
                    job = result.get("TrainingJob") or {}
                    view = self._trainer_view(job, scope)
                    if view is not None:
                        found[view.name] = view
                token = page.get("NextToken")
                if not token:
                    break
        return found

    def _trainer_view(
        self, job: Mapping[str, Any], scope: frozenset[str] | None
    ) -> TrainerView | None:
        name = str(job.get("TrainingJobName", ""))
        tags = _tags(job.get("Tags"))
        experiment = tags.get(TAG_EXPERIMENT)
        match = RUN_ID.match(name)
        if not experiment or not match or match.group(1) != experiment:
            return None
        if scope is not None and experiment not in scope:
            return None
        # Only this platform's trainers: their output lives in this platform's bucket.
        output = str((job.get("OutputDataConfig") or {}).get("S3OutputPath", ""))
        if not output.startswith(f"s3://{self.settings.bucket}/"):
            return None
        return trainer_view(job)

    def trainer(self, run_id: str) -> TrainerView | None:
        try:
            job = self._call(self.clients.sagemaker.describe_training_job, TrainingJobName=run_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in (
                "ValidationException",
                "ResourceNotFound",
            ):
                return None
            raise
        return trainer_view(job)

    def failures(
        self, queue: str, run_id: str, record: Record, active: list[JobView]
    ) -> list[WorkerFailure]:
        """Workers whose last job ended FAILED (not stopped by the project), for a run that
        trains: the array job's failed children, a single rollout that failed, and restarts."""
        found: dict[int, WorkerFailure] = {}
        page = self._call(
            self.clients.batch.list_jobs,
            jobQueue=queue,
            filters=[{"name": "JOB_NAME", "values": [run_id]}],
        )
        mains = sorted(
            (s for s in page.get("jobSummaryList", []) if s.get("jobName") == run_id),
            key=lambda s: s.get("createdAt", 0),
        )
        if mains:
            main = mains[-1]
            size = int((main.get("arrayProperties") or {}).get("size", 0) or 0)
            if size:
                children = self._call(
                    self.clients.batch.list_jobs, arrayJobId=main["jobId"], jobStatus="FAILED"
                )
                for child in children.get("jobSummaryList", []):
                    index = (child.get("arrayProperties") or {}).get("index")
                    if index is None and ":" in str(child.get("jobId")):
                        index = int(str(child["jobId"]).rsplit(":", 1)[1])
                    if index is not None and not _own_stop(child):
                        found[int(index)] = WorkerFailure(
                            worker=int(index),
                            job_id=str(child["jobId"]),
                            reason=_reason(child),
                        )
            elif main.get("status") == "FAILED" and not _own_stop(main):
                found[0] = WorkerFailure(worker=0, job_id=str(main["jobId"]), reason=_reason(main))
        # A worker restarted since: its restart decides.
        restart_ids = record.restart_jobs
        active_workers = {j.worker for j in active if j.worker is not None}
        for worker in list(found):
            if worker in restart_ids or worker in active_workers:
                del found[worker]
        ended = [job_id for w, job_id in sorted(restart_ids.items()) if w not in active_workers]
        if ended:
            described = self._call(self.clients.batch.describe_jobs, jobs=ended[:100])
            for job in described.get("jobs", []):
                parsed = RESTART_NAME.match(str(job.get("jobName", "")))
                if parsed and job.get("status") == "FAILED" and not _own_stop(job):
                    worker = int(parsed.group("worker"))
                    found[worker] = WorkerFailure(
                        worker=worker,
                        job_id=str(job["jobId"]),
                        reason=_reason(job),
                        log_stream=str((job.get("container") or {}).get("logStreamName") or ""),
                    )
        if found:
            self._add_log_streams(found)
        return [found[w] for w in sorted(found)]

    def _add_log_streams(self, found: dict[int, WorkerFailure]) -> None:
        missing = [f.job_id for f in found.values() if not f.log_stream][:100]
        if not missing:
            return
        described = self._call(self.clients.batch.describe_jobs, jobs=missing)
        streams = {
            str(j["jobId"]): str((j.get("container") or {}).get("logStreamName") or "")
            for j in described.get("jobs", [])
        }
        for worker, failure in list(found.items()):
            if streams.get(failure.job_id):
                found[worker] = WorkerFailure(
                    worker=failure.worker,
                    job_id=failure.job_id,
                    reason=failure.reason,
                    log_stream=streams[failure.job_id],
                )

    # ------------------------------------------------------------------ stacks

    def stacks(self, scope: frozenset[str] | None) -> list[dict[str, Any]]:
        """The platform's experiment stacks (raw DescribeStacks entries)."""
        cfn = self.clients.cloudformation
        raw: list[dict[str, Any]] = []
        if scope is not None:
            for experiment in sorted(scope):
                try:
                    page = self._call(cfn.describe_stacks, StackName=f"{STACK_PREFIX}{experiment}")
                except ClientError as error:
                    if "does not exist" in str(error):
                        continue
                    raise
                raw.extend(page.get("Stacks", []))
        else:
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"NextToken": token} if token else {}
                page = self._call(cfn.describe_stacks, **kwargs)
                raw.extend(page.get("Stacks", []))
                token = page.get("NextToken")
                if not token:
                    break
        mine = []
        for stack in raw:
            tags = _tags(stack.get("Tags"))
            if tags.get(TAG_EXPERIMENT) and tags.get(TAG_PLATFORM) == self.settings.platform:
                mine.append(stack)
        return mine

    def stack_view(self, stack: Mapping[str, Any], *, with_run: bool) -> StackView:
        tags = _tags(stack.get("Tags"))
        outputs = {o.get("OutputKey"): o.get("OutputValue") for o in stack.get("Outputs") or []}
        status = str(stack.get("StackStatus", ""))
        run_id: str | None = None
        if with_run:
            run_id = self.run_resource(str(stack["StackId"]))
        return StackView(
            stack_id=str(stack["StackId"]),
            name=str(stack.get("StackName", "")),
            experiment=tags[TAG_EXPERIMENT],
            status=status,
            run_id=run_id,
            rules=parse_rules(outputs.get(SUPERVISION_OUTPUT)),
        )

    def run_resource(self, stack_id: str) -> str | None:
        """The physical id of the stack's run resource (None: none, or not a run id)."""
        try:
            page = self._call(
                self.clients.cloudformation.describe_stack_resources, StackName=stack_id
            )
        except ClientError as error:
            if "does not exist" in str(error):
                return None
            raise
        for resource in page.get("StackResources", []):
            if resource.get("ResourceType") == RUN_RESOURCE_TYPE:
                physical = resource.get("PhysicalResourceId")
                return str(physical) if physical and RUN_ID.match(str(physical)) else None
        return None

    # ------------------------------------------------------------------ S3

    def finished_mark(self, run_id: str) -> bool:
        try:
            self._call(
                self.clients.s3.head_object,
                Bucket=self.settings.bucket,
                Key=f"{run_prefix(run_id)}/model/.finished",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def last_episode_at(self, run_id: str, workers: int) -> float | None:
        """Newest metrics file of the workers that show training progress.

        Each worker rewrites its metrics JSON after every episode (deepracer-simapp
        bundle/markov/metrics/s3_metrics.py upload_episode_metrics), worker k >= 1 as
        TrainingMetrics_<k>.json (markov/rollout_worker.py). Worker 0 also runs evaluation
        episodes while it waits for a checkpoint, so with more workers only 1.. count."""
        page = self._call(
            self.clients.s3.list_objects_v2,
            Bucket=self.settings.bucket,
            Prefix=f"{run_prefix(run_id)}/metrics/TrainingMetrics",
        )
        newest: float | None = None
        for item in page.get("Contents", []):
            name = str(item.get("Key", "")).rsplit("/", 1)[-1]
            is_zero = name == "TrainingMetrics.json"
            if workers > 1 and is_zero:
                continue
            stamp = _seconds(item.get("LastModified"))
            if stamp is not None and (newest is None or stamp > newest):
                newest = stamp
        return newest


def trainer_view(job: Mapping[str, Any]) -> TrainerView:
    resources = job.get("ResourceConfig") or {}
    return TrainerView(
        name=str(job.get("TrainingJobName", "")),
        status=str(job.get("TrainingJobStatus", "")),
        secondary_status=str(job.get("SecondaryStatus", "")),
        failure_reason=str(job.get("FailureReason", "") or ""),
        started_at=_seconds(job.get("TrainingStartTime")) or _seconds(job.get("CreationTime")),
        ended_at=_seconds(job.get("TrainingEndTime")),
        instance_count=int(resources.get("InstanceCount", 1) or 1),
    )


def classify(experiment: str, summary: Mapping[str, Any]) -> tuple[str, JobView] | None:
    """(run id, job) of a job in an experiment's queue, from its name (only the project's
    roles may submit to the queue): ``<run>`` rollouts, ``<run>-w<k>-r<n>`` a restart,
    ``<run>-<evaluation id>`` an evaluation."""
    name = str(summary.get("jobName", ""))
    if not name.startswith(f"{experiment}-"):
        return None
    rest = name[len(experiment) + 1 :]
    digest, _, tail = rest.partition("-")
    if not re.fullmatch(r"[0-9a-f]{8}", digest):
        return None
    run_id = f"{experiment}-{digest}"
    worker: int | None = None
    kind: str
    if not tail:
        kind = "rollouts"
    elif (restart := RESTART_NAME.match(name)) is not None and restart.group("run") == run_id:
        kind, worker = "restart", int(restart.group("worker"))
    else:
        kind = "evaluation"
    size = int((summary.get("arrayProperties") or {}).get("size", 0) or 0) or 1
    return run_id, JobView(
        job_id=str(summary["jobId"]),
        kind=kind,  # type: ignore[arg-type]
        status=str(summary.get("status", "")),
        created_at=_seconds(summary.get("createdAt")) or 0.0,
        started_at=_seconds(summary.get("startedAt")),
        worker=worker,
        size=size,
    )


def _reason(job: Mapping[str, Any]) -> str:
    reason = str(job.get("statusReason") or "")
    exit_code = (job.get("container") or {}).get("exitCode")
    if exit_code is not None:
        reason = f"{reason} (exit code {exit_code})" if reason else f"exit code {exit_code}"
    return reason or "no reason given"


def _own_stop(job: Mapping[str, Any]) -> bool:
    return str(job.get("statusReason") or "").lower().startswith(OWN_STOP_REASONS)


def observe(
    clients: Any, settings: Settings, *, now: float, scope: frozenset[str] | None = None
) -> tuple[Observed, int]:
    """One observation (and the number of API calls it took)."""
    reader = Observer(clients, settings, now=now)
    queues = reader.queues(scope)
    by_run: dict[str, list[JobView]] = {}
    experiment_of: dict[str, str] = {}
    listed = _parallel(lambda item: reader.active_jobs(*item), sorted(queues.items()))
    for (experiment, _queue), jobs_of_queue in zip(sorted(queues.items()), listed, strict=True):
        for run_id, job in jobs_of_queue:
            by_run.setdefault(run_id, []).append(job)
            experiment_of[run_id] = experiment
    trainers = reader.trainers(scope)
    for run_id in trainers:
        experiment_of.setdefault(run_id, run_id.rsplit("-", 1)[0])
    for run_id in sorted(set(by_run) - set(trainers)):
        found = reader.trainer(run_id)
        if found is not None:
            trainers[run_id] = found
    # Stacks after jobs (see the module's docstring).
    raw_stacks = reader.stacks(scope)
    experiments_with_runs = set(experiment_of.values())
    stacks = _parallel(
        lambda s: reader.stack_view(
            s,
            with_run=_tags(s.get("Tags")).get(TAG_EXPERIMENT) in experiments_with_runs
            and str(s.get("StackStatus")) in STABLE,
        ),
        raw_stacks,
    )
    rules = {s.experiment: s.rules for s in stacks}

    def look_at(run_id: str) -> RunView | None:
        experiment = experiment_of[run_id]
        return _run_view(
            reader,
            run_id,
            experiment,
            jobs=tuple(sorted(by_run.get(run_id, []), key=lambda j: j.job_id)),
            trainer=trainers.get(run_id),
            queue=queues.get(experiment),
            rules=rules.get(experiment, Rules()),
        )

    runs = [r for r in _parallel(look_at, sorted(experiment_of)) if r is not None]
    return Observed(now=now, stacks=tuple(stacks), runs=tuple(runs), scope=scope), reader.calls


# Reads run on a few threads (botocore clients are thread-safe): one sweep over 50 experiments
# makes some 500 calls, which one after another would take half a minute.
READ_THREADS = 8


def _parallel(fn: Any, items: list[Any]) -> list[Any]:
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


def _run_view(
    reader: Observer,
    run_id: str,
    experiment: str,
    *,
    jobs: tuple[JobView, ...],
    trainer: TrainerView | None,
    queue: str | None,
    rules: Rules,
) -> RunView | None:
    """What one run looks like now (None: it ended and its outcome is recorded)."""
    settings = reader.settings
    record = records.read(reader.clients.s3, settings.bucket, experiment, run_id, counter=reader)
    active_trainer = trainer is not None and trainer.status == "InProgress"
    if not jobs and not active_trainer and record.outcome is not None:
        return None
    count = max((j.size for j in jobs if j.kind == "rollouts"), default=0)
    failures: tuple[WorkerFailure, ...] = ()
    last_episode: float | None = None
    if active_trainer and queue is not None:
        failures = tuple(reader.failures(queue, run_id, record, list(jobs)))
        if rules.stall_minutes > 0:
            last_episode = reader.last_episode_at(run_id, count)
    finished = False
    if (
        trainer is not None
        and not active_trainer
        and any(j.active and j.kind != "evaluation" for j in jobs)
    ):
        finished = reader.finished_mark(run_id)
    return RunView(
        run_id=run_id,
        experiment=experiment,
        trainer=trainer,
        jobs=jobs,
        failures=failures,
        record=record,
        rollout_count=count,
        last_episode_at=last_episode,
        finished_mark=finished,
    )
