"""plan --requests: the API requests a deploy sends, written offline and checked against the
real service models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cli_support import EXPERIMENTS

from rollouts import operate

RUN = "oa-multi-track-0a1b2c3d"
DATA = f"experiments/oa-multi-track/runs/{RUN}"


def _load(directory: Path, name: str) -> dict[str, Any]:
    return json.loads((directory / name).read_text())


def _accepted_by_the_model(service: str, operation: str, request: dict[str, Any]) -> None:
    """Stubber validates the request against the service model (raises when it does not fit)."""
    if service == "robomaker":  # the final RoboMaker model, as the fan-out builds its client
        operate.fanout_modules()  # puts lambda/ on sys.path
        from fanout.clients import new_session

        client = new_session("eu-west-1").client("robomaker")
    else:
        client = boto3.client(service, region_name="eu-west-1")
    with Stubber(client) as stub:
        stub.add_response(
            operation,
            {"TrainingJobArn": "arn:x"}
            if service == "sagemaker"
            else ({"jobId": "j", "jobName": RUN} if service == "batch" else {"arn": "arn:x"}),
            request,
        )
        getattr(client, operation)(**request)


def test_batch_deploy_requests(run, tmp_path: Path) -> None:
    out = tmp_path / "requests"
    result = run(
        "plan",
        EXPERIMENTS / "multi-track-oa.yaml",
        "--requests",
        out,
        "--bucket",
        "my-data-bucket",
        "--region",
        "eu-west-1",
        "--account",
        "123456789012",
        "--run-id",
        RUN,
    )
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == [
        "CreateTrainingJob.json",
        "SubmitJob.json",
        "files.json",
    ]
    training = _load(out, "CreateTrainingJob.json")
    submit = _load(out, "SubmitJob.json")
    _accepted_by_the_model("sagemaker", "create_training_job", training)
    _accepted_by_the_model("batch", "submit_job", submit)

    assert training["TrainingJobName"] == RUN
    assert training["Environment"] == {"SAGEMAKER_PROGRAM": "sage-train.sh"}
    hyper = training["HyperParameters"]
    assert (hyper["s3_bucket"], hyper["s3_prefix"], hyper["aws_region"]) == (
        "my-data-bucket",
        DATA,
        "eu-west-1",
    )
    assert hyper["num_episodes_between_training"] == "12"  # from the experiment file
    env = {e["name"]: e["value"] for e in submit["containerOverrides"]["environment"]}
    assert env["SAGEMAKER_SHARED_S3_PREFIX"] == DATA == hyper["s3_prefix"]
    assert env["ROLLOUT_WORLD_NAMES"] == "reInvent2019_track,2022_april_open,reInvent2019_wide"
    assert submit["arrayProperties"] == {"size": 3}
    # Unknown until deploy: visible placeholders, never invented values.
    assert training["AlgorithmSpecification"]["TrainingImage"] == "<simapp-image-uri>"
    assert submit["jobQueue"] == "<experiment-job-queue-arn>"  # the experiment's own queue
    files = _load(out, "files.json")
    assert files["prefix"] == DATA
    assert "training_params_1.yaml" in files["objects"]


def test_placeholders_when_nothing_is_given(run, tmp_path: Path) -> None:
    out = tmp_path / "requests"
    assert run("plan", EXPERIMENTS / "default.yaml", "--requests", out).code == 0
    training = _load(out, "CreateTrainingJob.json")
    assert training["TrainingJobName"] == "<run-id>"
    assert training["HyperParameters"]["s3_bucket"] == "<data-bucket>"
    assert (
        training["HyperParameters"]["s3_prefix"] == "experiments/reinvent-time-trial/runs/<run-id>"
    )


def test_robomaker_deploy_requests(run, tmp_path: Path) -> None:
    out = tmp_path / "requests"
    result = run(
        "plan", EXPERIMENTS / "head-to-bot.yaml", "--requests", out, "-c", "backend=robomaker"
    )
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == [
        "CreateTrainingJob.json",
        "StartSimulationJobBatch-0.json",
        "files.json",
    ]
    batch = _load(out, "StartSimulationJobBatch-0.json")
    _accepted_by_the_model("robomaker", "start_simulation_job_batch", batch)
    jobs = batch["createSimulationJobRequests"]
    # The default platform puts rollouts in public subnets (egress=public): they need a public IP.
    assert {j["vpcConfig"]["assignPublicIp"] for j in jobs} == {True}
    nat = tmp_path / "nat"
    assert run(
        "plan", EXPERIMENTS / "head-to-bot.yaml", "--requests", nat, "-c", "backend=robomaker",
        "-c", "egress=nat",
    ).code == 0  # fmt: skip
    nat_jobs = _load(nat, "StartSimulationJobBatch-0.json")["createSimulationJobRequests"]
    assert {j["vpcConfig"]["assignPublicIp"] for j in nat_jobs} == {False}
    assert [
        j["simulationApplications"][0]["launchConfig"]["environmentVariables"]["ROLLOUT_IDX"]
        for j in jobs
    ] == ["0", "1"]


def test_requests_with_a_run_id_of_another_experiment_are_refused(run, tmp_path: Path) -> None:
    result = run(
        "plan", EXPERIMENTS / "default.yaml", "--requests", tmp_path / "r", "--run-id", RUN
    )
    assert result.code == 2 and "is not a run of 'reinvent-time-trial'" in result.err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag", ["--bucket", "--region", "--account", "--run-id"])
def test_bad_request_values_are_usage_errors(run, tmp_path: Path, flag: str) -> None:
    result = run("plan", EXPERIMENTS / "default.yaml", "--requests", tmp_path / "r", flag, "X Y")
    assert result.code == 2 and flag in result.err
    assert not (tmp_path / "r").exists()


def test_a_pretrained_model_is_read_from_the_runs_own_copy(run, tmp_path: Path) -> None:
    experiment = tmp_path / "next.yaml"
    experiment.write_text(
        "name: next-step\ntrack: reInvent2019_track\n"
        f"model_metadata: {EXPERIMENTS / 'models' / 'discrete-5-actions.json'}\n"
        f"reward_function: {EXPERIMENTS / 'rewards' / 'follow_center_line.py'}\n"
        "pretrained: {experiment: reinvent-time-trial, checkpoint: best}\n"
    )
    out = tmp_path / "requests"
    assert run("plan", experiment, "--requests", out, "--bucket", "my-data-bucket").code == 0
    hyper = _load(out, "CreateTrainingJob.json")["HyperParameters"]
    assert hyper["pretrained_s3_bucket"] == "my-data-bucket"
    # The trainer reads the copy the fan-out makes in the new run's own prefix, not the source
    assert hyper["pretrained_s3_prefix"] == "experiments/next-step/runs/<run-id>/pretrained"
    assert hyper["pretrained_checkpoint"] == "best"


def test_requests_can_be_written_again_and_are_stable(run, tmp_path: Path) -> None:
    out = tmp_path / "requests"
    for _ in range(2):  # into an existing folder: the files are replaced
        assert run("plan", EXPERIMENTS / "default.yaml", "--requests", out).code == 0
    text = (out / "SubmitJob.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_aws_region_is_the_region_when_no_region_option_is_given(monkeypatch) -> None:
    from rollouts.operate import Aws

    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert Aws().session().region_name == "eu-central-1"
    assert Aws(region="ap-south-1").session().region_name == "ap-south-1"  # --region wins
    monkeypatch.delenv("AWS_REGION")
    assert Aws().session().region_name == "us-west-2"  # botocore's own fallback remains
