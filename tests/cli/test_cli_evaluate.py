"""evaluate, and evaluations in status and stop: against the run's prefix in moto S3 and
Batch stubbed against its own model."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from aws_world import (
    BUCKET,
    EXP,
    JOB_DEFINITION,
    QUEUE,
    RUN,
    RUN_PREFIX,
    World,
)
from botocore.stub import ANY

CHECKPOINTS = {
    "best_checkpoint": {"name": "2_Step-4000.ckpt", "avg_eval_metric": 70.0},
    "last_checkpoint": {"name": "3_Step-6000.ckpt", "avg_eval_metric": 60.0},
}


def trained_run(w: World) -> None:
    s3 = w.aws.clients["s3"]
    for n in (2, 3):
        for suffix in ("index", "meta", "data-00000-of-00001"):
            s3.put_object(
                Bucket=BUCKET,
                Key=f"{RUN_PREFIX}/model/{n}_Step-{n * 2000}.ckpt.{suffix}",
                Body=b"x",
            )
    s3.put_object(Bucket=BUCKET, Key=f"{RUN_PREFIX}/model/model_metadata.json", Body=b"{}")
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{RUN_PREFIX}/model/deepracer_checkpoints.json",
        Body=json.dumps(CHECKPOINTS),
    )
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{RUN_PREFIX}/training_params_0.yaml",
        Body=b"RACE_TYPE: TIME_TRIAL\nCAR_COLOR: Red\n",
    )


def submitted(w: World, job_id: str = "eval-job-1", legs: int = 2) -> None:
    expected: dict[str, Any] = {
        "jobName": ANY,
        "jobQueue": QUEUE,
        "jobDefinition": JOB_DEFINITION,
        "containerOverrides": ANY,
        "propagateTags": True,
        "timeout": {"attemptDurationSeconds": 7200},
        "tags": {"rollouts:experiment": EXP},
    }
    if legs > 1:
        expected["arrayProperties"] = {"size": legs}
    w.stubs["batch"].add_response("submit_job", {"jobName": "x", "jobId": job_id}, expected)


def test_evaluate_starts_one_array_job_on_the_experiments_queue(run, world):
    world.stack()
    trained_run(world)
    submitted(world)
    doc = run(
        "evaluate", EXP, "--tracks", "Spain_track", "--both-directions", "--trials", "5", "--json"
    ).json()
    world.done()
    assert doc["status"] == "SUBMITTED" and doc["jobId"] == "eval-job-1"
    assert doc["checkpoint"] == 2  # best
    assert [leg["name"] for leg in doc["legs"]] == ["Spain_track", "Spain_track-reverse"]
    prefix = doc["results"].removeprefix(f"s3://{BUCKET}/").rstrip("/")
    assert prefix.startswith(f"{RUN_PREFIX}/evaluations/eval-")
    s3 = world.aws.clients["s3"]
    params = yaml.safe_load(
        s3.get_object(Bucket=BUCKET, Key=f"{prefix}/Spain_track-reverse/evaluation_params.yaml")[
            "Body"
        ].read()
    )
    assert params["REVERSE_DIR"] == "True" and params["NUMBER_OF_TRIALS"] == "5"
    assert params["CAR_COLOR"] == ["Red"]
    assert s3.get_object(Bucket=BUCKET, Key=f"{prefix}/model/2_Step-4000.ckpt.index")


def test_a_checkpoint_that_is_not_kept_changes_nothing(run, world):
    world.stack()
    trained_run(world)
    result = run("evaluate", EXP, "--tracks", "Spain_track", "--checkpoint", "1")
    world.done()  # nothing submitted
    assert result.code == 2
    assert "checkpoint 1 is not kept" in result.err and "kept: 2, 3" in result.err
    listed = world.aws.clients["s3"].list_objects_v2(
        Bucket=BUCKET, Prefix=f"{RUN_PREFIX}/evaluations/"
    )
    assert listed["KeyCount"] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tracks", "Spian_track"], "'Spian_track' is not a simapp track"),
        (["--tracks", "Spain_track", "--race-type", "F1"], "--race-type 'F1': one of"),
        (
            ["--tracks", "Spain_track", "--resets", "1"],
            "number of resets: 1; allowed: 0 or at least 2",
        ),
        (["--tracks", "Spain_track", "--trials", "1000"], "trials: 1000; allowed: 1 to 100"),
        (["--tracks", "Spain_track", "--checkpoint", "foo"], "checkpoint: 'foo'; allowed: best"),
        (
            ["--tracks", "Spain_track", "--off-track-penalty", "-1"],
            "off track penalty: -1.0; allowed: 0 to 60 s",
        ),
        (["--tracks", " , "], "tracks: give at least one track"),
    ],
)
def test_bad_arguments_are_named_before_any_aws_call(run, world, argv, message):
    # No stub is queued: an AWS call would fail differently.
    result = run("evaluate", EXP, *argv)
    assert result.code == 2 and message in result.err, result.err
    world.done()


def test_status_shows_evaluations_and_stop_stops_them(run, world):
    world.stack()
    trained_run(world)
    submitted(world, legs=1)
    started = run("evaluate", EXP, "--tracks", "Spain_track", "--json").json()
    # status: trainer, rollouts, then the evaluation's job
    world.stack()
    world.trainer("Completed")
    world.batch_jobs(parent_status="SUCCEEDED")
    world.stubs["batch"].add_response(
        "describe_jobs",
        {
            "jobs": [
                {
                    "jobId": f"job-1:{i}",
                    "jobName": RUN,
                    "jobQueue": QUEUE,
                    "status": "SUCCEEDED",
                    "startedAt": 1,
                    "jobDefinition": JOB_DEFINITION,
                }
                for i in range(3)
            ]
        },
        {"jobs": ["job-1:0", "job-1:1", "job-1:2"]},
    )
    world.stubs["batch"].add_response(
        "describe_jobs",
        {
            "jobs": [
                {
                    "jobId": "eval-job-1",
                    "jobName": started["jobName"],
                    "jobQueue": QUEUE,
                    "status": "RUNNING",
                    "startedAt": 1,
                    "jobDefinition": JOB_DEFINITION,
                }
            ]
        },
        {"jobs": ["eval-job-1"]},
    )
    status = run("status", EXP, "--json")
    assert status.code == 0, status.err
    [evaluation] = status.json()["evaluations"]
    assert evaluation["state"] == "RUNNING" and evaluation["legs"] == ["Spain_track"]
    assert evaluation["checkpoint"] == 2
    # stop: the rollouts, the trainer, then the evaluation by its job name
    world.stack()
    world.batch_jobs(parent_status="SUCCEEDED")
    world.trainer("Completed")
    world.stubs["batch"].add_response(
        "list_jobs",
        {
            "jobSummaryList": [
                {
                    "jobId": "eval-job-1",
                    "jobName": started["jobName"],
                    "createdAt": 1,
                    "status": "RUNNING",
                }
            ]
        },
        {"jobQueue": QUEUE, "filters": [{"name": "JOB_NAME", "values": [started["jobName"]]}]},
    )
    world.stubs["batch"].add_response("cancel_job", {}, {"jobId": "eval-job-1", "reason": ANY})
    world.stubs["batch"].add_response("terminate_job", {}, {"jobId": "eval-job-1", "reason": ANY})
    stopped = run("stop", EXP, "--yes")
    world.done()
    assert stopped.code == 0, stopped.err
    assert "evaluations: 1 job(s) stopped (eval-job-1)" in stopped.out
