"""A fake account for the run supervisor: CloudFormation stacks, Batch queues and jobs, SageMaker
training jobs, S3 objects and an SNS topic, behind *real* botocore clients.

It answers at botocore's ``before-call`` event, after botocore validated each request against
the real service model, so a request of the wrong shape fails a test before it gets here. It
keeps a clock of its own, records every call and can inject faults per operation.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

REGION = "eu-west-1"
ACCOUNT = "123456789012"
PLATFORM = "default"
BUCKET = "platform-data-bucket"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:rollouts-runs"
ACTIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


class FakeError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class Fault:
    operation: str
    code: str
    times: int
    status: int = 400


@dataclass
class World:
    now: float = 1_800_000_000.0
    stacks: dict[str, dict[str, Any]] = field(default_factory=dict)  # by stack id
    queues: dict[str, dict[str, str]] = field(default_factory=dict)  # arn -> tags
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # Batch, by id (children too)
    trainers: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, tuple[bytes, str, float]] = field(default_factory=dict)
    published: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    latency: float = 0.0  # seconds each call takes (the bench sets it)
    # ListJobs of a queue shows a job this long after it was submitted (DescribeJobs at once).
    list_lag: float = 0.0
    _ids: Any = field(default_factory=itertools.count)

    # ------------------------------------------------------------------ clients

    def clients(self) -> Any:
        world = self

        class _Clients:
            def __init__(self) -> None:
                session = boto3.session.Session(
                    aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
                )
                for service in ("batch", "sagemaker", "cloudformation", "s3", "sns"):
                    client = session.client(service)
                    client.meta.events.register("before-parameter-build", world._remember)
                    client.meta.events.register("before-call", world._answer)
                    setattr(self, service, client)

        return _Clients()

    @staticmethod
    def _remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fake_params"] = copy.deepcopy(params)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict]:
        op = model.name
        params = context.get("fake_params", {})
        if self.latency:
            time.sleep(self.latency)
        self.calls.append((op, params))
        for fault in self.faults:
            if fault.operation == op and fault.times > 0:
                fault.times -= 1
                return self._error(fault.code, "injected", fault.status)
        try:
            result = getattr(self, f"_{op}")(params)
        except FakeError as error:
            return self._error(error.code, error.message, error.status)
        return AWSResponse("https://fake", 200, {}, None), {
            **result,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    @staticmethod
    def _error(code: str, message: str, status: int) -> tuple[AWSResponse, dict]:
        return AWSResponse("https://fake", status, {}, None), {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    def count(self, *ops: str) -> int:
        return sum(1 for op, _ in self.calls if op in ops)

    def writes(self) -> list[str]:
        return [
            op
            for op, _ in self.calls
            if not op.startswith(("Describe", "List", "Get", "Head", "Search"))
        ]

    # ------------------------------------------------------------------ test API: building

    def stamp(self, offset: float = 0.0) -> datetime:
        return datetime.fromtimestamp(self.now + offset, tz=UTC)

    def add_stack(
        self,
        experiment: str,
        *,
        status: str = "CREATE_COMPLETE",
        run_id: str | None = None,
        supervision: dict[str, Any] | None = None,
        platform: str = PLATFORM,
    ) -> str:
        uid = hashlib.sha256(f"{experiment}{next(self._ids)}".encode()).hexdigest()[:12]
        stack_id = (
            f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/DeepRacerRollouts-{experiment}/{uid}"
        )
        self.stacks[stack_id] = {
            "StackId": stack_id,
            "StackName": f"DeepRacerRollouts-{experiment}",
            "StackStatus": status,
            "CreationTime": self.stamp(),
            "Tags": [
                {"Key": "rollouts:experiment", "Value": experiment},
                {"Key": "rollouts:platform", "Value": platform},
            ],
            "Outputs": (
                [{"OutputKey": "Supervision", "OutputValue": _json(supervision)}]
                if supervision is not None
                else []
            ),
            "run": run_id,
        }
        queue = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{experiment}-queue"
        self.queues[queue] = {"rollouts:experiment": experiment, "rollouts:platform": platform}
        return stack_id

    def stack(self, experiment: str) -> dict[str, Any]:
        live = [
            s
            for s in self.stacks.values()
            if s["StackName"] == f"DeepRacerRollouts-{experiment}"
            and s["StackStatus"] != "DELETE_COMPLETE"
        ]
        assert len(live) == 1, live
        return live[0]

    def queue_of(self, experiment: str) -> str:
        return f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{experiment}-queue"

    def start_trainer(
        self, run_id: str, *, status: str = "InProgress", secondary: str = "Training"
    ) -> None:
        experiment = run_id.rsplit("-", 1)[0]
        self.trainers[run_id] = {
            "TrainingJobName": run_id,
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{run_id}",
            "TrainingJobStatus": status,
            "SecondaryStatus": secondary,
            "CreationTime": self.stamp(),
            "TrainingStartTime": self.stamp(),
            "LastModifiedTime": self.stamp(),
            "ResourceConfig": {
                "InstanceType": "ml.c5.2xlarge",
                "InstanceCount": 1,
                "VolumeSizeInGB": 30,
            },
            "OutputDataConfig": {
                "S3OutputPath": f"s3://{BUCKET}/experiments/{experiment}/runs/{run_id}/output"
            },
            "Tags": [
                {"Key": "rollouts:experiment", "Value": experiment},
                {"Key": "rollouts:run", "Value": run_id},
            ],
        }

    def end_trainer(
        self,
        run_id: str,
        status: str = "Stopped",
        secondary: str = "MaxRuntimeExceeded",
        reason: str = "",
    ) -> None:
        job = self.trainers[run_id]
        job.update(
            TrainingJobStatus=status,
            SecondaryStatus=secondary,
            TrainingEndTime=self.stamp(),
            LastModifiedTime=self.stamp(),
        )
        if reason:
            job["FailureReason"] = reason

    def submit_rollouts(self, run_id: str, count: int) -> str:
        """The fan-out's SubmitJob: one array job (a plain job for one rollout)."""
        experiment = run_id.rsplit("-", 1)[0]
        request = {
            "jobName": run_id,
            "jobQueue": self.queue_of(experiment),
            "jobDefinition": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{experiment}-rollout:1",
            "containerOverrides": {
                "environment": [
                    {"name": "SAGEMAKER_SHARED_S3_BUCKET", "value": BUCKET},
                    {
                        "name": "SAGEMAKER_SHARED_S3_PREFIX",
                        "value": f"experiments/{experiment}/runs/{run_id}",
                    },
                    {"name": "NUM_WORKERS", "value": str(count)},
                ],
                "resourceRequirements": [
                    {"type": "VCPU", "value": "4"},
                    {"type": "MEMORY", "value": "8192"},
                ],
            },
            "timeout": {"attemptDurationSeconds": 9000},
            "tags": {"rollouts:experiment": experiment, "rollouts:run": run_id},
        }
        if count > 1:
            request["arrayProperties"] = {"size": count}
        return self._SubmitJob(request)["jobId"]

    def set_job(
        self, job_id: str, status: str, reason: str = "", exit_code: int | None = None
    ) -> None:
        job = self.jobs[job_id]
        job["status"] = status
        if status in ("STARTING", "RUNNING") and job.get("startedAt") is None:
            job["startedAt"] = int(self.now * 1000)
        if reason:
            job["statusReason"] = reason
        if exit_code is not None:
            job["container"]["exitCode"] = exit_code
        parent = job.get("parent")
        if parent:
            self._roll_up(parent)

    def _roll_up(self, parent_id: str) -> None:
        parent = self.jobs[parent_id]
        children = [self.jobs[c] for c in parent["children"]]
        states = {c["status"] for c in children}
        if states & set(ACTIVE):
            parent["status"] = "RUNNING" if "RUNNING" in states else "PENDING"
        elif "FAILED" in states:
            parent["status"] = "FAILED"
        else:
            parent["status"] = "SUCCEEDED"

    def run_all(self) -> None:
        for job in self.jobs.values():
            if job["status"] in ACTIVE and not job.get("children"):
                self.set_job(job["jobId"], "RUNNING")

    def active_jobs(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return [
            j
            for j in self.jobs.values()
            if j["status"] in ACTIVE
            and not j.get("children")
            and (run_id is None or j["tags"].get("rollouts:run", j["jobName"]).startswith(run_id))
        ]

    def running_trainers(self) -> list[str]:
        return sorted(
            n for n, j in self.trainers.items() if j["TrainingJobStatus"] in ("InProgress",)
        )

    def put(self, key: str, body: bytes = b"{}", *, at: float | None = None) -> None:
        etag = '"' + hashlib.md5(body).hexdigest() + '"'
        self.objects[key] = (body, etag, self.now if at is None else at)

    # ------------------------------------------------------------------ CloudFormation

    def _DescribeStacks(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get("StackName")
        stacks = [s for s in self.stacks.values() if s["StackStatus"] != "DELETE_COMPLETE"]
        if name:
            stacks = [s for s in self.stacks.values() if name in (s["StackName"], s["StackId"])]
            if name.startswith("arn:") is False:
                stacks = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
            if not stacks:
                raise FakeError("ValidationError", f"Stack with id {name} does not exist")
        return {"Stacks": [{k: v for k, v in s.items() if k != "run"} for s in stacks]}

    def _DescribeStackResources(self, p: dict[str, Any]) -> dict[str, Any]:
        stack = self.stacks.get(p["StackName"])
        if stack is None:
            raise FakeError("ValidationError", f"Stack with id {p['StackName']} does not exist")
        resources = [
            {
                "LogicalResourceId": "RunRolloutsRun0A1B2C3D",
                "ResourceType": "Custom::RolloutsRun",
                "ResourceStatus": "CREATE_COMPLETE",
                "Timestamp": self.stamp(),
                "StackId": stack["StackId"],
                "StackName": stack["StackName"],
                **({"PhysicalResourceId": stack["run"]} if stack["run"] else {}),
            }
        ]
        return {"StackResources": resources}

    # ------------------------------------------------------------------ Batch

    def _DescribeJobQueues(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "jobQueues": [
                {
                    "jobQueueName": arn.rsplit("/", 1)[1],
                    "jobQueueArn": arn,
                    "state": "ENABLED",
                    "priority": 1,
                    "computeEnvironmentOrder": [],
                    "tags": dict(tags),
                }
                for arn, tags in sorted(self.queues.items())
            ]
        }

    def _summary(self, job: dict[str, Any]) -> dict[str, Any]:
        summary = {
            k: job[k]
            for k in (
                "jobId",
                "jobName",
                "status",
                "createdAt",
                "startedAt",
                "statusReason",
                "jobArn",
            )
            if job.get(k) is not None
        }
        if job.get("children"):
            summary["arrayProperties"] = {"size": len(job["children"])}
        if job.get("index") is not None:
            summary["arrayProperties"] = {"index": job["index"]}
        if job.get("container", {}).get("exitCode") is not None:
            summary["container"] = {"exitCode": job["container"]["exitCode"]}
        return summary

    def _ListJobs(self, p: dict[str, Any]) -> dict[str, Any]:
        if "arrayJobId" in p:
            parent = self.jobs[p["arrayJobId"]]
            found = [self.jobs[c] for c in parent["children"]]
            if p.get("jobStatus"):
                found = [j for j in found if j["status"] == p["jobStatus"]]
        else:
            found = [
                j
                for j in self.jobs.values()
                if j["jobQueue"] == p["jobQueue"] and j.get("parent") is None
            ]
            filters = p.get("filters")
            if filters:
                names = set(filters[0]["values"])
                found = [j for j in found if j["jobName"] in names]
            else:
                found = [j for j in found if j["status"] == p.get("jobStatus", "RUNNING")]
        return {"jobSummaryList": [self._summary(j) for j in found]}

    def _DescribeJobs(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"jobs": [copy.deepcopy(_public(self.jobs[i])) for i in p["jobs"] if i in self.jobs]}

    def _TerminateJob(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(p["jobId"])
        if job is None:
            raise FakeError("ClientException", f"job {p['jobId']} not found")
        targets = [self.jobs[c] for c in job["children"]] if job.get("children") else [job]
        for target in targets:
            if target["status"] in ACTIVE:
                target["status"] = "FAILED"
                target["statusReason"] = p["reason"]
        if job.get("children"):
            self._roll_up(job["jobId"])
        elif job.get("parent"):
            self._roll_up(job["parent"])
        return {}

    def _SubmitJob(self, p: dict[str, Any]) -> dict[str, Any]:
        job_id = f"job-{next(self._ids):04d}"
        job = {
            "jobId": job_id,
            "jobArn": f"arn:aws:batch:{REGION}:{ACCOUNT}:job/{job_id}",
            "jobName": p["jobName"],
            "jobQueue": p["jobQueue"],
            "jobDefinition": p["jobDefinition"],
            "status": "SUBMITTED",
            "createdAt": int(self.now * 1000),
            "startedAt": None,
            "tags": dict(p.get("tags") or {}),
            "timeout": p.get("timeout"),
            "container": {
                "environment": list((p.get("containerOverrides") or {}).get("environment") or []),
                "resourceRequirements": list(
                    (p.get("containerOverrides") or {}).get("resourceRequirements") or []
                ),
                "logStreamName": f"rollouts/default/{job_id}",
            },
            "children": [],
            "parent": None,
            "index": None,
        }
        self.jobs[job_id] = job
        size = (p.get("arrayProperties") or {}).get("size")
        if size:
            for i in range(size):
                child = copy.deepcopy(job)
                child.update(jobId=f"{job_id}:{i}", children=[], parent=job_id, index=i)
                child["container"]["logStreamName"] = f"rollouts/default/{job_id}-{i}"
                self.jobs[child["jobId"]] = child
                job["children"].append(child["jobId"])
            job["status"] = "PENDING"
        return {"jobId": job_id, "jobName": p["jobName"], "jobArn": job["jobArn"]}

    # ------------------------------------------------------------------ SageMaker

    def _Search(self, p: dict[str, Any]) -> dict[str, Any]:
        filters = p["SearchExpression"]["Filters"]
        found = []
        for job in self.trainers.values():
            ok = True
            for f in filters:
                name, op, value = f["Name"], f["Operator"], f.get("Value")
                if name.startswith("Tags."):
                    ok &= any(t["Key"] == name[5:] for t in job["Tags"])
                elif name == "TrainingJobStatus":
                    ok &= (job["TrainingJobStatus"] == value) == (op == "Equals")
                elif name == "LastModifiedTime":
                    ok &= (
                        job["LastModifiedTime"].timestamp()
                        > datetime.fromisoformat(value).timestamp()
                    )
            if ok:
                found.append({"TrainingJob": copy.deepcopy(job)})
        return {"Results": found}

    def _DescribeTrainingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self.trainers.get(p["TrainingJobName"])
        if job is None:
            raise FakeError("ValidationException", "Requested resource not found.")
        out = {k: v for k, v in job.items() if k != "Tags"}
        out.setdefault("AlgorithmSpecification", {"TrainingInputMode": "File"})
        out.setdefault("StoppingCondition", {"MaxRuntimeInSeconds": 7200})
        return out

    def _StopTrainingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        job = self.trainers[p["TrainingJobName"]]
        if job["TrainingJobStatus"] != "InProgress":
            raise FakeError("ValidationException", "The job status is not InProgress")
        job.update(
            TrainingJobStatus="Stopped",
            SecondaryStatus="Stopped",
            TrainingEndTime=self.stamp(),
            LastModifiedTime=self.stamp(),
        )
        return {}

    # ------------------------------------------------------------------ S3 and SNS

    def _GetObject(self, p: dict[str, Any]) -> dict[str, Any]:
        found = self.objects.get(p["Key"])
        if found is None:
            raise FakeError("NoSuchKey", "The specified key does not exist.", 404)
        body, etag, _ = found

        class _Body:
            def read(self, size: int = -1) -> bytes:
                return body if size < 0 else body[:size]

        return {"Body": _Body(), "ETag": etag}

    def _HeadObject(self, p: dict[str, Any]) -> dict[str, Any]:
        found = self.objects.get(p["Key"])
        if found is None:
            raise FakeError("404", "Not Found", 404)
        return {"ETag": found[1], "ContentLength": len(found[0])}

    def _PutObject(self, p: dict[str, Any]) -> dict[str, Any]:
        key = p["Key"]
        if p.get("IfNoneMatch") == "*" and key in self.objects:
            raise FakeError(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                412,
            )
        if p.get("IfMatch") and (key not in self.objects or self.objects[key][1] != p["IfMatch"]):
            raise FakeError(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                412,
            )
        body = p.get("Body", b"")
        if hasattr(body, "read"):
            body = body.read()
        elif not isinstance(body, bytes | str):
            body = b"".join(body)
        self.put(key, body.encode() if isinstance(body, str) else body)
        return {"ETag": self.objects[key][1]}

    def _ListObjectsV2(self, p: dict[str, Any]) -> dict[str, Any]:
        prefix = p.get("Prefix", "")
        contents = [
            {"Key": k, "LastModified": datetime.fromtimestamp(at, tz=UTC), "Size": len(body)}
            for k, (body, _, at) in sorted(self.objects.items())
            if k.startswith(prefix)
        ]
        return {"Contents": contents, "KeyCount": len(contents), "IsTruncated": False}

    def _Publish(self, p: dict[str, Any]) -> dict[str, Any]:
        self.published.append(p)
        return {"MessageId": f"m-{len(self.published)}"}


def _public(job: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: v for k, v in job.items() if k not in ("children", "parent", "index") and v is not None
    }
    if job.get("children"):
        out["arrayProperties"] = {"size": len(job["children"])}
    if job.get("index") is not None:
        out["arrayProperties"] = {"index": job["index"]}
    return out


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)
