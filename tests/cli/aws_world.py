"""A stubbed AWS for the CLI tests: Stubber clients (request shapes checked against the real
service models, RoboMaker's final one included) and moto S3; the ``world`` fixture is in
conftest.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.stub import Stubber
from cli_support import FIXTURES

from rollouts import operate

RUN = "reinvent-time-trial-0a1b2c3d"
EXP = "reinvent-time-trial"
STACK = f"DeepRacerRollouts-{EXP}"
QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/rollouts"
SIM_BATCH = "arn:aws:robomaker:us-east-1:123456789012:simulation-job-batch/sjb-1"
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
BUCKET = "platform-data"
JOB_DEFINITION = "arn:aws:batch:us-east-1:123456789012:job-definition/rollouts-x:1"
PREFIX = f"experiments/{EXP}"
# Each run keeps its data under the experiment prefix's runs/<run id>/ (README).
RUN_PREFIX = f"{PREFIX}/runs/{RUN}"
EARLIER = "reinvent-time-trial-99aa88bb"


_SESSIONS: list[Any] = []


def _shared_session() -> Any:
    """One boto3 session for every test: its loader parses each service model once (a new session
    per test spent most of the test loading JSON)."""
    if not _SESSIONS:
        _SESSIONS.append(operate.Aws(region="us-east-1").session())
    return _SESSIONS[0]


class World:
    """Stubbed clients for one test; S3 is moto's."""

    def __init__(self) -> None:
        self.aws = operate.Aws(region="us-east-1")
        self.aws._session = _shared_session()
        self.stubs: dict[str, Stubber] = {}
        for service in ("cloudformation", "sagemaker", "batch", "robomaker"):
            client = self.aws.session().client(service, region_name="us-east-1")
            self.aws.clients[service] = client
            self.stubs[service] = Stubber(client)
            self.stubs[service].activate()
        self.aws.clients["s3"] = boto3.client("s3", region_name="us-east-1")
        self.aws.clients["s3"].create_bucket(Bucket=BUCKET)

    def stack(self, backend: str = "batch", count: int = 3) -> None:
        outputs = {
            "ExperimentName": EXP,
            "Backend": backend,
            "DataBucket": BUCKET,
            "ExperimentPrefix": PREFIX,
            "RunId": RUN,
            "RolloutCount": str(count),
            "VideoStreams": ",".join(f"rollouts-{EXP}-{i}" for i in range(count)),
        }
        if backend == "batch":
            outputs["JobQueue"] = QUEUE
            outputs["RolloutJobDefinition"] = JOB_DEFINITION
            outputs["RolloutVcpus"] = "4"
            outputs["RolloutMemoryMib"] = "8192"
        else:
            outputs["SimulationJobBatchArn"] = SIM_BATCH
        self.stubs["cloudformation"].add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": STACK,
                        "CreationTime": T0,
                        "StackStatus": "CREATE_COMPLETE",
                        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
                        "Tags": [{"Key": "rollouts:experiment", "Value": EXP}],
                    }
                ]
            },
            {"StackName": STACK},
        )

    def trainer(self, status: str = "InProgress", name: str = RUN) -> None:
        self.stubs["sagemaker"].add_response(
            "describe_training_job",
            {
                "TrainingJobName": name,
                "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
                "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/{PREFIX}/runs/{name}"},
                "TrainingJobStatus": status,
                "SecondaryStatus": "Training",
                "AlgorithmSpecification": {
                    "TrainingInputMode": "File",
                    "TrainingImage": "123.dkr.ecr/simapp:6",
                },
                "ResourceConfig": {
                    "InstanceType": "ml.c5.2xlarge",
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 30,
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": 7200},
                "CreationTime": T0,
                "TrainingStartTime": T0,
            },
            {"TrainingJobName": name},
        )

    def batch_jobs(self, parent_status: str = "RUNNING", name: str = RUN) -> None:
        self.stubs["batch"].add_response(
            "list_jobs",
            {
                "jobSummaryList": [
                    {
                        "jobId": "job-1",
                        "jobName": name,
                        "createdAt": 1,
                        "status": parent_status,
                        "arrayProperties": {"size": 3},
                    }
                ]
            },
            {"jobQueue": QUEUE, "filters": [{"name": "JOB_NAME", "values": [name]}]},
        )

    def checkpoints(self, prefix: str = RUN_PREFIX) -> None:
        """model/deepracer_checkpoints.json as rollout 0 writes it."""
        entry = {"avg_eval_metric": 55.5, "time_stamp": 1764590000.0}
        self.aws.clients["s3"].put_object(
            Bucket=BUCKET,
            Key=f"{prefix}/model/deepracer_checkpoints.json",
            Body=json.dumps(
                {
                    "best_checkpoint": {"name": "2_Step-4000.ckpt", **entry},
                    "last_checkpoint": {"name": "3_Step-6100.ckpt", **entry},
                }
            ),
        )

    def s3_metrics(self, prefix: str = RUN_PREFIX) -> None:
        s3 = self.aws.clients["s3"]
        data = json.loads((FIXTURES / "metrics" / "console-training-metrics.json").read_text())
        s3.put_object(
            Bucket=BUCKET, Key=f"{prefix}/metrics/TrainingMetrics.json", Body=json.dumps(data)
        )
        s3.put_object(
            Bucket=BUCKET,
            Key=f"{prefix}/metrics/TrainingMetrics_1.json",
            Body=json.dumps({"metrics": data["metrics"][:3]}),
        )
        s3.put_object(
            Bucket=BUCKET,
            Key=f"{prefix}/hyperparameters.json",
            Body=json.dumps({"num_episodes_between_training": 21}),
        )

    def done(self) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()
