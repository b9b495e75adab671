"""The EventBridge handler: a trained run of this experiment is evaluated once, whatever the
number of deliveries; other runs and runs stopped by hand are left alone (moto S3, Batch
stubbed against its own model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import pytest
import yaml
from botocore.stub import ANY, Stubber
from evaluation import handler
from moto import mock_aws
from test_evaluation_plan import CHECKPOINTS, MODEL_KEYS, RUN, RUN_PREFIX

BUCKET = "platform-data"
CONFIG = {
    "experiment": "reinvent-time-trial",
    "bucket": BUCKET,
    "experimentPrefix": "experiments/reinvent-time-trial",
    "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/q",
    "jobDefinition": "arn:aws:batch:us-east-1:123456789012:job-definition/rollouts:3",
    "vcpus": 4,
    "memoryMib": 8192,
    "tags": {},
    "settings": {"tracks": ["Spain_track"], "both_directions": True, "trials": 3},
}


def event(name: str = RUN, status: str = "Completed", secondary: str = "Completed") -> dict:
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Training Job State Change",
        "region": "us-east-1",
        "detail": {
            "TrainingJobName": name,
            "TrainingJobStatus": status,
            "SecondaryStatus": secondary,
        },
    }


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Stubber]]:
    monkeypatch.setenv("EVALUATION_CONFIG", json.dumps(CONFIG))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for key in MODEL_KEYS:
            s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
        s3.put_object(
            Bucket=BUCKET, Key=f"{RUN_PREFIX}/model/deepracer_checkpoints.json", Body=CHECKPOINTS
        )
        s3.put_object(
            Bucket=BUCKET,
            Key=f"{RUN_PREFIX}/training_params.yaml",
            Body=b"CAR_COLOR: Blue\nRACE_TYPE: TIME_TRIAL\n",
        )
        batch = botocore.session.get_session().create_client("batch", region_name="us-east-1")
        with Stubber(batch) as stub:
            monkeypatch.setattr(handler, "clients", lambda: (s3, batch))
            yield s3, stub


def test_a_completed_run_is_evaluated_once(cloud):
    s3, stub = cloud
    stub.add_response(
        "submit_job",
        {"jobName": "x", "jobId": "job-9"},
        {
            **{
                k: ANY
                for k in (
                    "jobName",
                    "jobQueue",
                    "jobDefinition",
                    "containerOverrides",
                    "propagateTags",
                    "timeout",
                    "tags",
                    "arrayProperties",
                )
            }
        },
    )
    first = handler.on_training_state(event())
    assert first["evaluated"] is True and first["jobId"] == "job-9"
    prefix = f"{RUN_PREFIX}/evaluations/{first['evaluationId']}"
    record = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"{prefix}/evaluation.json")["Body"].read()
    )
    assert record["status"] == "SUBMITTED" and record["checkpoint"] == 7
    assert [leg["name"] for leg in record["legs"]] == ["Spain_track", "Spain_track-reverse"]
    params = yaml.safe_load(
        s3.get_object(Bucket=BUCKET, Key=f"{prefix}/Spain_track/evaluation_params.yaml")[
            "Body"
        ].read()
    )
    assert params["CAR_COLOR"] == ["Blue"] and params["NUMBER_OF_TRIALS"] == "3"
    copied = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/model/7_Step-1400.ckpt.index")
    assert copied["Body"].read() == f"{RUN_PREFIX}/model/7_Step-1400.ckpt.index".encode()
    # EventBridge delivers at least once: the second delivery submits nothing.
    again = handler.on_training_state(event())
    assert again["evaluated"] is False and again["status"] == "ALREADY_STARTED"
    stub.assert_no_pending_responses()


def test_a_run_stopped_by_its_time_limit_counts_as_trained(cloud):
    _, stub = cloud
    stub.add_response("submit_job", {"jobName": "x", "jobId": "job-1"}, None)
    done = handler.on_training_state(event(status="Stopped", secondary="MaxRuntimeExceeded"))
    assert done["evaluated"] is True


@pytest.mark.parametrize(
    ("name", "status", "secondary", "why"),
    [
        (RUN, "Stopped", "Stopped", "only trained runs are evaluated"),
        (RUN, "Failed", "Failed", "only trained runs are evaluated"),
        ("reinvent-time-trial-x-0a1b2c3d", "Completed", "Completed", "is not a run of"),
        ("reinvent-0a1b2c3d", "Completed", "Completed", "is not a run of"),
    ],
)
def test_other_runs_and_hand_stopped_runs_are_left_alone(cloud, name, status, secondary, why):
    _, stub = cloud
    result = handler.on_training_state(event(name, status, secondary))
    assert result["evaluated"] is False and why in result["why"]
    stub.assert_no_pending_responses()  # nothing submitted


def test_a_refused_submit_is_recorded_with_its_reason(cloud):
    s3, stub = cloud
    stub.add_client_error("submit_job", "ClientException", "queue is disabled")
    result = handler.on_training_state(event())
    assert result["status"] == "FAILED"
    prefix = f"{RUN_PREFIX}/evaluations/{result['evaluationId']}"
    record = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"{prefix}/evaluation.json")["Body"].read()
    )
    assert "queue is disabled" in record["reason"]


def _planned(s3: Any, evaluation_id: str) -> tuple[Any, Any]:
    """The target and plan of a one-track evaluation of the fixture run."""
    from evaluation import start as starting
    from evaluation.plan import Settings, Target, plan

    target = Target(
        experiment="reinvent-time-trial",
        run_id=RUN,
        bucket=BUCKET,
        run_prefix=RUN_PREFIX,
        region="us-east-1",
        job_queue=CONFIG["jobQueue"],
        job_definition=CONFIG["jobDefinition"],
        vcpus=4,
        memory_mib=8192,
    )
    keys, checkpoints, params = starting.run_inputs(s3, target)
    planned = plan(
        target,
        Settings(tracks=("Spain_track",)),
        evaluation_id=evaluation_id,
        model_keys=keys,
        checkpoints_json=checkpoints,
        training_params=params,
    )
    return target, planned


class StarterDiedError(Exception):
    """The Lambda ended (timeout, crash) right after recording the evaluation."""


def test_an_evaluation_whose_starter_died_is_taken_over_once(cloud):
    from evaluation import start as starting

    s3, stub = cloud
    target, planned = _planned(s3, "eval-0000dead")

    class DyingBatch:
        def submit_job(self, **_request: Any) -> dict:
            raise StarterDiedError

    with pytest.raises(StarterDiedError):
        starting.start(s3, DyingBatch(), target, planned, clock=lambda: 1000.0)
    # Up to the staleness window the dead starter might still be running: nobody takes over.
    soon = starting.start(
        s3, DyingBatch(), target, planned, clock=lambda: 1000.0 + starting.STALE_SECONDS
    )
    assert soon["status"] == "ALREADY_STARTED"
    # Lambda's own retry of the killed invocation (a minute after its time limit) takes it over,
    # finds no job of that name and submits.
    first_retry = starting.FUNCTION_TIMEOUT_SECONDS + 60
    assert first_retry > starting.STALE_SECONDS
    stub.add_response(
        "list_jobs",
        {"jobSummaryList": []},
        {
            "jobQueue": CONFIG["jobQueue"],
            "filters": [{"name": "JOB_NAME", "values": [planned.submit["jobName"]]}],
        },
    )
    stub.add_response("submit_job", {"jobName": "x", "jobId": "job-late"}, None)
    batch = handler.clients()[1]
    late = starting.start(s3, batch, target, planned, clock=lambda: 1000.0 + first_retry)
    assert late["status"] == "SUBMITTED" and late["jobId"] == "job-late"
    again = starting.start(s3, batch, target, planned, clock=lambda: 1000.0 + 5000)
    assert again["status"] == "ALREADY_STARTED" and again["jobId"] == "job-late"
    stub.assert_no_pending_responses()


def test_a_starter_killed_after_batch_accepted_its_job_is_not_submitted_twice(cloud):
    from evaluation import start as starting

    s3, stub = cloud
    target, planned = _planned(s3, "eval-0000beef")

    class AcceptedThenDied:
        def submit_job(self, **_request: Any) -> dict:
            raise StarterDiedError  # Batch accepted the job; the answer never got written down

    with pytest.raises(StarterDiedError):
        starting.start(s3, AcceptedThenDied(), target, planned, clock=lambda: 1000.0)
    stub.add_response(
        "list_jobs",
        {
            "jobSummaryList": [
                {"jobId": "job-first", "jobName": planned.submit["jobName"], "createdAt": 1}
            ]
        },
        None,
    )
    batch = handler.clients()[1]
    late = starting.start(s3, batch, target, planned, clock=lambda: 1000.0 + 200)
    assert late["status"] == "SUBMITTED" and late["jobId"] == "job-first"
    stub.assert_no_pending_responses()  # no second submit_job
