"""A small stateful fake of SageMaker training jobs, Batch jobs and RoboMaker job batches.

It answers *real* botocore clients at the ``before-call`` event, i.e. after botocore has validated
the request against the real service model (RoboMaker's final one included) and serialized it: a
wrong request shape fails a test before it reaches the fake. It records every call and can inject
faults (throttling bursts, errors, errors after the call took effect) per operation.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse

REGION = "eu-west-1"
ACCOUNT = "123456789012"


@dataclass
class Fault:
    operation: str
    code: str
    status: int
    times: int
    message: str = "injected"
    after_effect: bool = False  # the call takes effect, then the response is "lost"
    skip: int = 0  # let this many calls through first
    exception: Exception | None = None  # raised client-side instead of an error response


class FakeCloud:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.faults: list[Fault] = []
        self.training_jobs: dict[str, dict[str, Any]] = {}
        self.batch_jobs: dict[str, dict[str, Any]] = {}
        self.sim_batches: dict[str, dict[str, Any]] = {}
        self._counter = itertools.count()
        # Eventual consistency of Batch ListJobs: a submitted job shows up this many (clock)
        # seconds later. DescribeJobs by id sees it at once.
        self.list_lag = 0.0
        # The same for RoboMaker's ListSimulationJobBatches (DescribeSimulationJobBatch by ARN
        # sees a batch at once).
        self.sim_list_lag = 0.0
        self.clock: Callable[[], float] = lambda: 0.0
        # The Lambda role may describe/cancel only batches tagged with this experiment (None: all).
        self.described_experiment: str | None = None

    # ------------------------------------------------------------------ wiring
    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-parameter-build", self.remember_params)
        client.meta.events.register("before-call", self.answer)
        return client

    @staticmethod
    def remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fake_params"] = copy.deepcopy(params)

    def answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict]:
        op = model.name
        params = context.get("fake_params", {})
        with self.lock:
            self.calls.append((op, params))
            fault = self._take_fault(op)
            if fault is not None and not fault.after_effect:
                if fault.exception is not None:
                    raise fault.exception
                return self._error(fault.code, fault.message, fault.status)
            try:
                result = getattr(self, f"_{op}")(params)
            except FakeError as error:
                return self._error(error.code, error.message, error.status)
            if fault is not None:
                if fault.exception is not None:
                    raise fault.exception
                return self._error(fault.code, fault.message, fault.status)
        return AWSResponse("https://fake", 200, {}, None), {
            **result,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    def _take_fault(self, op: str) -> Fault | None:
        for fault in self.faults:
            if fault.operation == op and fault.times > 0:
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                return fault
        return None

    @staticmethod
    def _error(code: str, message: str, status: int) -> tuple[AWSResponse, dict]:
        return AWSResponse("https://fake", status, {}, None), {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    # ------------------------------------------------------------------ test API
    def inject(
        self, operation: str, code: str, *, times: int = 1, status: int = 400, **kw: Any
    ) -> None:
        self.faults.append(Fault(operation, code, status, times, **kw))

    def throttle(self, operation: str, times: int) -> None:
        codes = {
            "SubmitJob": ("TooManyRequestsException", 429),
            "ListJobs": ("TooManyRequestsException", 429),
        }
        code, status = codes.get(operation, ("ThrottlingException", 400))
        self.inject(operation, code, times=times, status=status, message="Rate exceeded")

    def ops(self, *names: str) -> list[dict[str, Any]]:
        """Parameters of every call to the named operations, in order."""
        return [p for op, p in self.calls if op in names]

    def count(self, op: str) -> int:
        return len(self.ops(op))

    def job_calls(self) -> list[str]:
        """Every call except reads: what changed the world."""
        reads = ("Describe", "List", "BatchDescribe")
        return [op for op, _ in self.calls if not op.startswith(reads)]

    def set_trainer(
        self, name: str, status: str, secondary: str = "Starting", reason: str = ""
    ) -> None:
        job = self.training_jobs[name]
        job.update(TrainingJobStatus=status, SecondaryStatus=secondary)
        if reason:
            job["FailureReason"] = reason

    def set_batch(self, job_id: str, status: str, summary: dict[str, int] | None = None) -> None:
        job = self.batch_jobs[job_id]
        job["status"] = status
        if summary is not None:
            job.setdefault("arrayProperties", {})["statusSummary"] = summary

    def active_trainers(self) -> list[str]:
        return [n for n, j in self.training_jobs.items() if j["TrainingJobStatus"] == "InProgress"]

    def active_batch_jobs(self) -> list[str]:
        active = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
        return [i for i, j in self.batch_jobs.items() if j["status"] in active]

    def active_sim_batches(self) -> list[str]:
        return [a for a, b in self.sim_batches.items() if b["status"] in ("Pending", "InProgress")]

    # ------------------------------------------------------------------ SageMaker
    def _DescribeTrainingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self.training_jobs.get(p["TrainingJobName"])
        if job is None:
            raise FakeError("ValidationException", "Requested resource not found.")
        return copy.deepcopy(job)

    def _CreateTrainingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["TrainingJobName"]
        if name in self.training_jobs:
            raise FakeError("ResourceInUse", f"Training job names must be unique: {name} exists")
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name.lower()}"
        self.training_jobs[name] = {
            "TrainingJobName": name,
            "TrainingJobArn": arn,
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Starting",
            "HyperParameters": p.get("HyperParameters", {}),
            "Request": p,
        }
        return {"TrainingJobArn": arn}

    def _StopTrainingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self.training_jobs.get(p["TrainingJobName"])
        if job is None:
            raise FakeError("ValidationException", "Requested resource not found.")
        if job["TrainingJobStatus"] != "InProgress":
            raise FakeError("ValidationException", f"job is in status {job['TrainingJobStatus']}")
        job.update(TrainingJobStatus="Stopping", SecondaryStatus="Stopping")
        return {}

    # ------------------------------------------------------------------ Batch
    def _SubmitJob(self, p: dict[str, Any]) -> dict[str, Any]:
        job_id = str(uuid.UUID(int=next(self._counter) + 1))
        job: dict[str, Any] = {
            "jobId": job_id,
            "jobName": p["jobName"],
            "jobQueue": p["jobQueue"],
            "status": "SUBMITTED",
            "createdAt": next(self._counter),
            "visibleAt": self.clock() + self.list_lag,
            "request": p,
        }
        if "arrayProperties" in p:
            job["arrayProperties"] = {"size": p["arrayProperties"]["size"], "statusSummary": {}}
        self.batch_jobs[job_id] = job
        return {"jobId": job_id, "jobName": p["jobName"], "jobArn": f"arn:aws:batch:job/{job_id}"}

    def _ListJobs(self, p: dict[str, Any]) -> dict[str, Any]:
        names = next(f["values"] for f in p.get("filters", []) if f["name"] == "JOB_NAME")
        found = [
            {
                "jobId": j["jobId"],
                "jobName": j["jobName"],
                "status": j["status"],
                "createdAt": j["createdAt"],
            }
            for j in self.batch_jobs.values()
            if j["jobQueue"] == p["jobQueue"]
            and j["jobName"].lower() in [n.lower() for n in names]
            and j.get("visibleAt", 0.0) <= self.clock()
        ]
        return {"jobSummaryList": found}

    def _DescribeJobs(self, p: dict[str, Any]) -> dict[str, Any]:
        jobs = []
        for job_id in p["jobs"]:
            job = self.batch_jobs.get(job_id)
            if job:
                shown = {
                    k: copy.deepcopy(v) for k, v in job.items() if k not in ("request", "visibleAt")
                }
                shown["jobDefinition"] = job["request"]["jobDefinition"]
                jobs.append(shown)
        return {"jobs": jobs}

    def _CancelJob(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self.batch_jobs[p["jobId"]]
        if job["status"] in ("SUBMITTED", "PENDING", "RUNNABLE"):
            job["status"] = "FAILED"
            job["statusReason"] = p["reason"]
        return {}

    def _TerminateJob(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self.batch_jobs[p["jobId"]]
        if job["status"] in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"):
            job["status"] = "FAILED"
            job["statusReason"] = p["reason"]
        return {}

    # ------------------------------------------------------------------ RoboMaker
    def _StartSimulationJobBatch(self, p: dict[str, Any]) -> dict[str, Any]:
        token = p.get("clientRequestToken")
        for arn, existing in self.sim_batches.items():
            if token and existing["clientRequestToken"] == token:
                if existing["request"] != p:
                    raise FakeError("IdempotentParameterMismatchException", "token reused")
                return {"arn": arn, "status": existing["status"]}
        batch_id = f"sim-batch-{next(self._counter)}"
        arn = f"arn:aws:robomaker:{REGION}:{ACCOUNT}:simulation-job-batch/{batch_id}"
        self.sim_batches[arn] = {
            "arn": arn,
            "status": "InProgress",
            "clientRequestToken": token,
            "tags": p.get("tags", {}),
            "request": p,
            "createdRequests": [
                {"arn": f"{arn}/job-{i}", "status": "Pending"}
                for i in range(len(p["createSimulationJobRequests"]))
            ],
            "failedRequests": [],
            "visibleAt": self.clock() + self.sim_list_lag,
        }
        return {"arn": arn, "status": "InProgress"}

    def _allowed(self, batch: dict[str, Any]) -> None:
        wanted = self.described_experiment
        if wanted is not None and batch["tags"].get("rollouts:experiment") != wanted:
            raise FakeError("AccessDeniedException", "not authorized (resource tag)", 403)

    def _DescribeSimulationJobBatch(self, p: dict[str, Any]) -> dict[str, Any]:
        batch = self.sim_batches.get(p["batch"])
        if batch is None:
            raise FakeError("ResourceNotFoundException", "not found", 404)
        self._allowed(batch)
        return {k: copy.deepcopy(v) for k, v in batch.items() if k not in ("request", "visibleAt")}

    def _ListSimulationJobBatches(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "simulationJobBatchSummaries": [
                {"arn": a, "status": b["status"]}
                for a, b in self.sim_batches.items()
                if b.get("visibleAt", 0.0) <= self.clock()
            ]
        }

    def _CancelSimulationJobBatch(self, p: dict[str, Any]) -> dict[str, Any]:
        batch = self.sim_batches.get(p["batch"])
        if batch is None:
            raise FakeError("ResourceNotFoundException", "not found", 404)
        self._allowed(batch)
        batch["status"] = "Canceled"
        for job in batch["createdRequests"]:
            if job["status"] in ("Pending", "Preparing", "Running"):
                job["status"] = "Canceled"
        return {}


class FakeError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
