"""The automatic evaluation: an EventBridge rule on this experiment's training jobs and a Lambda
whose role can only read its runs, write under their evaluations/ and submit to its own queue."""

from __future__ import annotations

import json
from typing import Any

from synth_support import Synthesis


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_only_experiments_that_ask_for_it_get_one(batch: Synthesis, robomaker: Synthesis) -> None:
    assert len(of_type(batch.experiment("reinvent-time-trial"), "AWS::Events::Rule")) == 1
    assert not of_type(batch.experiment("oa-multi-track"), "AWS::Events::Rule")
    # RoboMaker has no queue to run evaluations on: the section is left out (with a warning).
    assert not of_type(robomaker.experiment("reinvent-time-trial"), "AWS::Events::Rule")


def test_the_rule_matches_this_experiments_ended_training_jobs(batch: Synthesis) -> None:
    template = batch.experiment("reinvent-time-trial")
    [rule] = of_type(template, "AWS::Events::Rule").values()
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Training Job State Change"],
        "detail": {
            "TrainingJobName": [{"prefix": "reinvent-time-trial-"}],
            "TrainingJobStatus": ["Completed", "Stopped"],
        },
    }
    [target] = rule["Properties"]["Targets"]
    function_id = target["Arn"]["Fn::GetAtt"][0]
    function = template["Resources"][function_id]["Properties"]
    assert function["Handler"] == "evaluation.handler.on_training_state"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 4


def test_the_lambda_is_told_the_experiments_evaluation(batch: Synthesis) -> None:
    template = batch.experiment("reinvent-time-trial")
    [function] = [
        f["Properties"]
        for f in of_type(template, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "evaluation.handler.on_training_state"
    ]
    parts = function["Environment"]["Variables"]["EVALUATION_CONFIG"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "<token>" for p in parts)
    config = json.loads(text)
    assert config["experiment"] == "reinvent-time-trial"
    assert config["experimentPrefix"] == "experiments/reinvent-time-trial"
    assert config["settings"] == {
        "tracks": ["reInvent2019_track", "reInvent2019_wide"],
        "both_directions": True,
        "trials": 3,
        "checkpoint": "best",
        "is_continuous": False,
        "number_of_resets": 0,
        "off_track_penalty": 2.0,
        "collision_penalty": 5.0,
    }
    assert (config["vcpus"], config["memoryMib"]) == (4, 8192)
    # The Lambda's settings are exactly what its handler accepts.
    from evaluation.plan import Settings

    Settings(**{**config["settings"], "tracks": tuple(config["settings"]["tracks"])})


def test_the_evaluation_role_is_least_privilege(batch: Synthesis) -> None:
    template = batch.experiment("reinvent-time-trial")
    [(role_id, _)] = [
        (k, r)
        for k, r in of_type(template, "AWS::IAM::Role").items()
        if "Starts the evaluation" in r["Properties"].get("Description", "")
    ]
    statements = [
        s
        for p in of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_sid = {s.get("Sid"): s for s in statements}
    writes = [
        s
        for s in statements
        if any(a in ("s3:PutObject", "s3:DeleteObject") for a in _list(s["Action"]))
    ]
    assert [s["Sid"] for s in writes] == ["WriteEvaluations"]
    assert by_sid["WriteEvaluations"]["Resource"]["Fn::Join"][1][-1] == (
        "/experiments/reinvent-time-trial/runs/*/evaluations/*"
    )
    assert _list(by_sid["SubmitEvaluation"]["Action"]) == ["batch:SubmitJob"]
    queue, definition = by_sid["SubmitEvaluation"]["Resource"]
    assert template["Resources"][queue["Fn::GetAtt"][0]]["Type"] == "AWS::Batch::JobQueue"
    assert template["Resources"][definition["Ref"]]["Type"] == "AWS::Batch::JobDefinition"
    assert by_sid["TagEvaluation"]["Condition"] == {
        "StringEquals": {"aws:RequestTag/rollouts:experiment": "reinvent-time-trial"}
    }
    assert not any("iam:PassRole" in _list(s["Action"]) for s in statements)
    # The one read without a resource type: a takeover finds the dead starter's job by name.
    assert _list(by_sid["FindEvaluationJobs"]["Action"]) == ["batch:ListJobs"]


def test_the_staleness_window_outlasts_the_function_and_not_its_first_retry(
    batch: Synthesis,
) -> None:
    from evaluation import start

    template = batch.experiment("reinvent-time-trial")
    [function] = [
        f["Properties"]
        for f in of_type(template, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "evaluation.handler.on_training_state"
    ]
    assert function["Timeout"] == start.FUNCTION_TIMEOUT_SECONDS
    # Lambda retries a failed asynchronous invocation after one minute, then two.
    assert function["Timeout"] < start.STALE_SECONDS < function["Timeout"] + 60


def test_the_compute_environment_fits_the_evaluation_legs(batch: Synthesis) -> None:
    [environment] = of_type(
        batch.experiment("reinvent-time-trial"), "AWS::Batch::ComputeEnvironment"
    ).values()
    # 4 rollouts, 2 tracks x 2 directions = 4 legs, 4 vCPUs each.
    assert environment["Properties"]["ComputeResources"]["MaxvCpus"] == 16


def _list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]
