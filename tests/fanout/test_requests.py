"""Request shapes against the real service models (Stubber), and their contract values."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from fanout import batch_backend, clients, handler, pretrained, robomaker_backend, trainer
from fanout import props as props_mod
from fanout.clients import new_session
from fanout.errors import PropertyError
from fanout.naming import Place
from fanout.plan import RolloutPlan, Run
from fanout.props import parse_properties
from fanout_builders import (
    ACCOUNT,
    BUCKET,
    JOB_DEF,
    PREFIX,
    QUEUE,
    REGION,
    SIM_APP,
    STACK_ID,
    make_asset,
    make_event,
    make_props,
)

# Every run's data lives under <experiment prefix>/runs/<run id> (README, "One prefix per run").
RUN_PREFIX = f"{PREFIX}/runs/demo-0123abcd"


def _run(n: int, backend: str, **kw: Any) -> Run:
    return Run(
        "demo-0123abcd",
        parse_properties(make_props(n, backend, **kw)),
        Place.from_stack_id(STACK_ID),
    )


def _plan(n: int, backend: str, yaml_keys: tuple[str, ...] | None = None, **kw: Any) -> RolloutPlan:
    keys = yaml_keys or ("training_params.yaml",) * n
    return RolloutPlan(_run(n, backend, **kw), keys, "model/model_metadata.json")


def _client(service: str) -> Any:
    return new_session(REGION).client(service)


def test_robomaker_client_comes_from_the_final_model() -> None:
    client = _client("robomaker")
    model = client.meta.service_model
    assert model.api_version == "2018-06-29"
    assert "StartSimulationJobBatch" in model.operation_names
    assert (clients.MODEL_DIR / "robomaker" / "2018-06-29" / "service-2.json").is_file()


def _training_request(run: Run, algorithm: str = "clipped_ppo", **hyper: Any) -> dict[str, Any]:
    values = trainer.hyperparameters(
        run.props,
        REGION,
        data_prefix=run.data_prefix,
        model_metadata_key="model/model_metadata.json",
        from_file={"lr": "0.0003"},
        pretrained=None,
    )
    return trainer.training_job_request(
        run.props,
        run.training_job_name,
        data_prefix=run.data_prefix,
        tags=run.tags,
        hyper=values,
        algorithm=algorithm,
    )


def test_create_training_job_request() -> None:
    run = _run(2, "batch")
    request = _training_request(run)
    client = _client("sagemaker")
    with Stubber(client) as stub:
        stub.add_response("create_training_job", {"TrainingJobArn": run.training_job_arn}, request)
        client.create_training_job(**request)  # raises if the shape is wrong

    assert request["TrainingJobName"] == "demo-0123abcd"
    # The distributed trainer (Redis + training_worker.py), not the image's single-job default.
    assert request["Environment"] == {"SAGEMAKER_PROGRAM": "sage-train.sh"}
    assert request["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/{RUN_PREFIX}/"}
    assert request["VpcConfig"]["Subnets"] == [
        "subnet-0aaaaaaaaaaaaaaa1",
        "subnet-0bbbbbbbbbbbbbbb2",
    ]
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert request["EnableNetworkIsolation"] is False
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    assert all(isinstance(v, str) for v in request["HyperParameters"].values())
    # Exactly the arguments markov/training_worker.py parses, plus the RL hyperparameters.
    assert request["HyperParameters"] == {
        "lr": "0.0003",
        "s3_bucket": BUCKET,
        "s3_prefix": RUN_PREFIX,
        "aws_region": REGION,
        "model_metadata_s3_key": f"{RUN_PREFIX}/model/model_metadata.json",
    }
    assert {"Key": "rollouts:run", "Value": "demo-0123abcd"} in request["Tags"]
    assert {"Key": "team", "Value": "research"} in request["Tags"]


def test_pretrained_model_is_passed_as_hyperparameters() -> None:
    run = _run(1, "batch")
    model = pretrained.PretrainedModel(
        "other-bucket", "experiments/base/runs/base-0a0b0c0d", "best"
    )
    hyper = trainer.hyperparameters(
        run.props,
        REGION,
        data_prefix=run.data_prefix,
        model_metadata_key="m.json",
        from_file={},
        pretrained=model,
    )
    assert hyper["pretrained_s3_bucket"] == "other-bucket"
    assert hyper["pretrained_s3_prefix"] == "experiments/base/runs/base-0a0b0c0d"
    assert hyper["pretrained_checkpoint"] == "best"
    assert "pretrained_s3_bucket" not in trainer.hyperparameters(
        run.props,
        REGION,
        data_prefix=run.data_prefix,
        model_metadata_key="m.json",
        from_file={},
        pretrained=None,
    )


@pytest.mark.parametrize(
    ("trainer_props", "expected"),
    [
        ({"PretrainedCheckpoint": "best"}, "needs Trainer.PretrainedBucket"),
        (
            {"PretrainedBucket": "b-bucket", "PretrainedPrefix": "p", "PretrainedCheckpoint": "x"},
            "Trainer.PretrainedCheckpoint is 'x'; allowed: last | best",
        ),
        ({"PretrainedRun": "latest"}, "Trainer.PretrainedRun needs Trainer.PretrainedBucket"),
        (
            {"PretrainedBucket": "b-bucket", "PretrainedPrefix": "p", "PretrainedRun": "newest"},
            "Trainer.PretrainedRun is 'newest'; allowed: latest or a run id",
        ),
    ],
)
def test_pretrained_properties_are_checked(trainer_props: dict[str, str], expected: str) -> None:
    raw = make_props(1, "batch")
    raw["Trainer"] = {**raw["Trainer"], **trainer_props}
    with pytest.raises(PropertyError, match=expected):
        parse_properties(raw)


@pytest.mark.parametrize(
    ("algorithm", "names"),
    [
        (
            "clipped_ppo",
            [
                "reward-training",
                "steps-training",
                "ppo-surrogate-loss",
                "ppo-kl-divergence",
                "ppo-entropy",
            ],
        ),
        # SAC logs no "Policy training>" lines (markov/multi_agent_coach/agents/sac_agent.py).
        ("sac", ["reward-training", "steps-training"]),
    ],
)
def test_metric_definitions_follow_the_algorithm(algorithm: str, names: list[str]) -> None:
    request = _training_request(_run(1, "batch"), algorithm)
    assert [m["Name"] for m in request["AlgorithmSpecification"]["MetricDefinitions"]] == names


def test_tag_rule_is_one_pattern_with_lengths() -> None:
    assert props_mod.TAG_RE.pattern == r"^[A-Za-z0-9 _.:/=+\-]*$"
    assert (props_mod.TAG_KEY_MAX, props_mod.TAG_VALUE_MAX) == (128, 256)
    ok = {"k" * 128: "v" * 256, "a b_c.d:e/f=g+h-i": "", "Team": "R D"}
    assert parse_properties({**make_props(1, "batch"), "Tags": ok}).tags == ok
    for bad in ({"k": "ü"}, {"k": "a@b"}, {"": "v"}, {"ROLLOUTS:x": "v"}):
        with pytest.raises(PropertyError, match="Tags"):
            parse_properties({**make_props(1, "batch"), "Tags": bad})


POLICY_LINE = (
    "Policy training> Surrogate loss=-0.0326, KL divergence=7.2e-06, Entropy=2.83, training epoch=0"
)


EPISODE_LINE = (
    "Training> Name=main_level/agent, Worker=0, Episode=19, Total reward=-102.88, "
    "Steps=19019, Training iteration=1"
)


@pytest.mark.parametrize(
    ("line", "name", "value"),
    [
        (EPISODE_LINE, "reward-training", "-102.88"),
        (EPISODE_LINE, "steps-training", "19019"),
        (POLICY_LINE, "ppo-surrogate-loss", "-0.0326"),
        (POLICY_LINE, "ppo-kl-divergence", "7.2e-06"),
        (POLICY_LINE, "ppo-entropy", "2.83"),
    ],
)
def test_metric_definitions_match_simapp_log_lines(line: str, name: str, value: str) -> None:
    """Lines as rl_coach's ScreenLogger prints them on the trainer (no colours)."""
    definitions = _training_request(_run(1, "batch"))["AlgorithmSpecification"]
    regex = next(m["Regex"] for m in definitions["MetricDefinitions"] if m["Name"] == name)
    match = re.search(regex, line)
    assert match is not None and match.group(1) == value


def test_no_metric_matches_a_rollout_only_line() -> None:
    """ "Testing>" lines come from rollout workers only: no definition may claim them."""
    testing = "Testing> Name=main_level/agent, Worker=0, Episode=19, Total reward=1359.12"
    definitions = _training_request(_run(1, "batch"))["AlgorithmSpecification"]
    assert not any(re.search(m["Regex"], testing) for m in definitions["MetricDefinitions"])


def test_batch_array_job_request() -> None:
    plan = _plan(
        3,
        "batch",
        video=True,
        worlds=["reInvent2019_track", "Bowtie_track", "Oval_track"],
        yaml_keys=("training_params_0.yaml", "training_params_1.yaml", "training_params_2.yaml"),
    )
    request = batch_backend.submit_request(plan)
    client = _client("batch")
    with Stubber(client) as stub:
        stub.add_response("submit_job", {"jobId": "j-1", "jobName": "demo-0123abcd"}, request)
        client.submit_job(**request)

    assert request["jobName"] == "demo-0123abcd"
    assert request["jobQueue"] == QUEUE and request["jobDefinition"] == JOB_DEF
    assert request["arrayProperties"] == {"size": 3}
    assert request["timeout"] == {"attemptDurationSeconds": 7200}
    assert request["propagateTags"] is True
    assert request["tags"]["rollouts:experiment"] == "demo"
    env = {e["name"]: e["value"] for e in request["containerOverrides"]["environment"]}
    assert env == {
        "SAGEMAKER_SHARED_S3_BUCKET": BUCKET,
        "SAGEMAKER_SHARED_S3_PREFIX": RUN_PREFIX,
        "APP_REGION": REGION,
        "ENABLE_KINESIS": "true",
        "MODEL_METADATA_FILE_S3_KEY": f"{RUN_PREFIX}/model/model_metadata.json",
        "NUM_WORKERS": "3",
        "ROLLOUT_WORLD_NAMES": "reInvent2019_track,Bowtie_track,Oval_track",
        "ROLLOUT_VIDEO_STREAMS": "rollouts-demo-0,rollouts-demo-1,rollouts-demo-2",
        "ROLLOUT_YAML_NAMES": ",".join(f"training_params_{i}.yaml" for i in range(3)),
    }
    assert not any(name.startswith("AWS_BATCH") for name in env), "reserved by Batch"
    # The experiment's rollout size overrides the job definition's default.
    assert request["containerOverrides"]["resourceRequirements"] == [
        {"type": "VCPU", "value": "4"},
        {"type": "MEMORY", "value": "8192"},
    ]


def test_batch_single_rollout_is_a_plain_job_and_shared_yaml_is_one_entry() -> None:
    request = batch_backend.submit_request(_plan(1, "batch"))
    assert "arrayProperties" not in request, "arrayProperties.size must be >= 2"
    env = {e["name"]: e["value"] for e in request["containerOverrides"]["environment"]}
    assert env["ROLLOUT_YAML_NAMES"] == "training_params.yaml"
    assert env["ENABLE_KINESIS"] == "false" and env["ROLLOUT_VIDEO_STREAMS"] == ""
    many = batch_backend.submit_request(_plan(50, "batch"))
    many_env = {e["name"]: e["value"] for e in many["containerOverrides"]["environment"]}
    assert many_env["ROLLOUT_YAML_NAMES"] == "training_params.yaml"


def test_batch_request_over_the_payload_quota_is_refused_before_anything_starts() -> None:
    long_worlds = [f"a_very_long_track_name_that_keeps_going_{i:04d}" for i in range(1000)]
    with pytest.raises(PropertyError, match=r"bytes; allowed: 30720 \(Batch job payload quota\)"):
        batch_backend.submit_request(_plan(1000, "batch", worlds=long_worlds))


def test_batch_request_for_1000_rollouts_fits_the_quota() -> None:
    request = batch_backend.submit_request(_plan(1000, "batch"))
    assert len(json.dumps(request)) < 30 * 1024  # Batch quota: 30 KiB of SubmitJob payload


@pytest.mark.parametrize("video", [True, False])
def test_robomaker_batch_request(video: bool) -> None:
    plan = _plan(3, "robomaker", video=video)
    (request,) = robomaker_backend.batch_requests(plan)
    client = _client("robomaker")
    with Stubber(client) as stub:
        stub.add_response("start_simulation_job_batch", {"arn": "arn:aws:robomaker:x"}, request)
        client.start_simulation_job_batch(**request)  # shape checked against the final model

    assert request["clientRequestToken"] == "demo-0123abcd-b0"
    assert request["batchPolicy"]["maxConcurrency"] == 3
    job = request["createSimulationJobRequests"][1]
    assert job["iamRole"] == f"arn:aws:iam::{ACCOUNT}:role/rollouts-robomaker"
    assert job["failureBehavior"] == "Fail"
    assert job["maxJobDurationInSeconds"] == 7200
    assert job["vpcConfig"] == {
        "subnets": ["subnet-0aaaaaaaaaaaaaaa1"],
        "securityGroups": ["sg-0ddddddddddddddd4"],
        "assignPublicIp": True,
    }
    assert job["compute"] == {"simulationUnitLimit": 15, "computeType": "CPU"}
    (app,) = job["simulationApplications"]
    assert app["application"] == SIM_APP
    launch = app["launchConfig"]
    # The default app form is the workshop's ROS 1 bundle: a package and a launch file.
    assert launch["packageName"] == "deepracer_simulation_environment"
    assert launch["launchFile"] == "distributed_training.launch"
    assert "command" not in launch
    env = launch["environmentVariables"]
    assert len(env) <= 20
    assert env["ROLLOUT_IDX"] == "1" and env["WORLD_NAME"] == "reInvent2019_track"
    # Relative to SAGEMAKER_SHARED_S3_PREFIX: the simapp joins the two.
    assert env["S3_YAML_NAME"] == "training_params.yaml"
    assert env["SAGEMAKER_SHARED_S3_PREFIX"] == RUN_PREFIX
    assert env["ENABLE_KINESIS"] == ("true" if video else "false")
    # RoboMaker rejects empty values: no stream variable at all when video is off.
    assert env.get("KINESIS_VIDEO_STREAM_NAME") == ("rollouts-demo-1" if video else None)
    assert all(v for v in env.values())
    assert job["tags"]["rollouts:run"] == "demo-0123abcd"


def test_robomaker_container_form_runs_the_6x_launcher() -> None:
    raw = make_props(2, "robomaker")
    raw["RoboMaker"]["AppForm"] = "container"
    plan = RolloutPlan(
        Run("demo-0123abcd", parse_properties(raw), Place.from_stack_id(STACK_ID)),
        ("training_params.yaml",) * 2,
        "model/model_metadata.json",
    )
    (request,) = robomaker_backend.batch_requests(plan)
    client = _client("robomaker")
    with Stubber(client) as stub:
        stub.add_response("start_simulation_job_batch", {"arn": "arn:aws:robomaker:x"}, request)
        client.start_simulation_job_batch(**request)
    launch = request["createSimulationJobRequests"][0]["simulationApplications"][0]["launchConfig"]
    # The image's ENTRYPOINT is bash -c: one string, the ROS 2 launch file of simapp 6.x.
    assert launch["command"] == ["/opt/ml/code/run.sh run distributed_training.launch.py"]
    assert "packageName" not in launch and "launchFile" not in launch


def test_robomaker_gpu_compute_asks_for_a_gpu_unit() -> None:
    raw = make_props(1, "robomaker")
    raw["RoboMaker"]["ComputeType"] = "GPU_AND_CPU"
    plan = RolloutPlan(
        Run("demo-0123abcd", parse_properties(raw), Place.from_stack_id(STACK_ID)),
        ("training_params.yaml",),
        "model/model_metadata.json",
    )
    (request,) = robomaker_backend.batch_requests(plan)
    assert request["createSimulationJobRequests"][0]["compute"]["gpuUnitLimit"] == 1


def test_robomaker_1000_workers_is_one_call_and_1001_would_be_two() -> None:
    assert len(robomaker_backend.batch_requests(_plan(1000, "robomaker"))) == 1
    assert robomaker_backend.MAX_JOBS_PER_BATCH == 1000


def test_robomaker_two_chunks_are_two_idempotent_calls(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The multi-chunk path (1001+ workers at the real size): with 500 jobs per call, N=1000
    takes two StartSimulationJobBatch calls, each with its own token; a lost response and a
    duplicate delivery reuse the tokens and start no third batch."""
    monkeypatch.setattr(robomaker_backend, "MAX_JOBS_PER_BATCH", 500)
    props = make_props(1000, "robomaker")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.inject(
        "StartSimulationJobBatch", "InternalServerException", status=500, after_effect=True
    )

    created, done = world.deploy(props)

    run_id = created["PhysicalResourceId"]
    assert done["IsComplete"] is True and done["Data"]["SimulationJobBatchCount"] == 2
    assert len(world.cloud.sim_batches) == 2
    sizes = sorted(
        len(b["request"]["createSimulationJobRequests"]) for b in world.cloud.sim_batches.values()
    )
    assert sizes == [500, 500]
    tokens = [p["clientRequestToken"] for p in world.cloud.ops("StartSimulationJobBatch")]
    assert set(tokens) == {f"{run_id}-b0", f"{run_id}-b1"} and len(tokens) == 3, "one retried"
    indexes = sorted(
        int(r["simulationApplications"][0]["launchConfig"]["environmentVariables"]["ROLLOUT_IDX"])
        for b in world.cloud.sim_batches.values()
        for r in b["request"]["createSimulationJobRequests"]
    )
    assert indexes == list(range(1000))

    # A duplicate delivery finds both batches by token and starts nothing.
    assert world.deploy(props)[1]["IsComplete"] is True
    assert len(world.cloud.sim_batches) == 2 and len(world.cloud.training_jobs) == 1


def test_create_and_delete_call_sequence_with_stubbers(world: Any) -> None:
    """The handler's whole Create (on_event, then is_complete) and Delete, each call checked by
    Stubber against the models."""
    props = make_props(1, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    built = clients.get_clients()
    sagemaker, batch = _client("sagemaker"), _client("batch")
    built.__dict__.update(sagemaker=sagemaker, batch=batch)  # replace the fake-backed ones
    run_id = handler.run_id("demo", STACK_ID, "Run", "req-1")
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{run_id}"
    by_name = {"jobQueue": QUEUE, "filters": [{"name": "JOB_NAME", "values": [run_id]}]}
    with Stubber(sagemaker) as sm, Stubber(batch) as bt:
        create = make_event("Create", props)
        result = handler.on_event(create, None)  # plans only: no job API call
        assert result == {
            "PhysicalResourceId": run_id,
            "PlannedAt": result["PlannedAt"],
            "SharedYaml": True,
        }
        run_data = f"{PREFIX}/runs/{run_id}"

        sm.add_client_error(
            "describe_training_job",
            "ValidationException",
            "Requested resource not found.",
            expected_params={"TrainingJobName": run_id},
        )
        sm.add_response(
            "create_training_job",
            {"TrainingJobArn": arn},
            {
                **{
                    k: ANY
                    for k in (
                        "HyperParameters",
                        "AlgorithmSpecification",
                        "RoleArn",
                        "OutputDataConfig",
                        "ResourceConfig",
                        "VpcConfig",
                        "StoppingCondition",
                        "Tags",
                        "EnableNetworkIsolation",
                        "Environment",
                    )
                },
                "TrainingJobName": run_id,
            },
        )
        sm.add_response(
            "describe_training_job",
            _training_job(run_id, arn, "InProgress", run_data),
            {"TrainingJobName": run_id},
        )
        bt.add_response("list_jobs", {"jobSummaryList": []}, by_name)  # dedupe before submit
        bt.add_response("submit_job", {"jobId": "j-1", "jobName": run_id}, None)
        sm.add_response(  # readiness is judged from a description taken after the starts
            "describe_training_job",
            _training_job(run_id, arn, "InProgress", run_data),
            {"TrainingJobName": run_id},
        )
        bt.add_response(
            "describe_jobs",
            {
                "jobs": [
                    {
                        "jobName": run_id,
                        "jobId": "j-1",
                        "jobQueue": QUEUE,
                        "status": "RUNNABLE",
                        "startedAt": 0,
                        "jobDefinition": JOB_DEF,
                    }
                ]
            },
            {"jobs": ["j-1"]},
        )
        done = handler.is_complete({**create, **result}, None)
        sm.assert_no_pending_responses()
        bt.assert_no_pending_responses()
        assert done["IsComplete"] is True and done["Data"]["RolloutJobId"] == "j-1"

        # The job id recorded at submit is stopped by id, then ListJobs finds nothing else.
        bt.add_response("describe_jobs", _batch_job(run_id, "RUNNING"), {"jobs": ["j-1"]})
        bt.add_response("cancel_job", {}, {"jobId": "j-1", "reason": batch_backend.STOP_REASON})
        bt.add_response("terminate_job", {}, {"jobId": "j-1", "reason": batch_backend.STOP_REASON})
        bt.add_response(
            "list_jobs",
            {"jobSummaryList": [{"jobId": "j-1", "jobName": run_id, "status": "RUNNING"}]},
            by_name,
        )
        sm.add_response(
            "describe_training_job",
            _training_job(run_id, arn, "InProgress", run_data),
            {"TrainingJobName": run_id},
        )
        sm.add_response("stop_training_job", {}, {"TrainingJobName": run_id})
        handler.on_event(make_event("Delete", props, physical_id=run_id), None)
        sm.assert_no_pending_responses()
        bt.assert_no_pending_responses()

        # Delete again: everything is already stopped, SageMaker no longer says InProgress.
        bt.add_response("describe_jobs", _batch_job(run_id, "FAILED"), {"jobs": ["j-1"]})
        bt.add_response(
            "list_jobs",
            {"jobSummaryList": [{"jobId": "j-1", "jobName": run_id, "status": "FAILED"}]},
            by_name,
        )
        sm.add_response(
            "describe_training_job",
            _training_job(run_id, arn, "Stopped", run_data),
            {"TrainingJobName": run_id},
        )
        handler.on_event(make_event("Delete", props, physical_id=run_id), None)
        sm.assert_no_pending_responses()
        bt.assert_no_pending_responses()


def _batch_job(name: str, status: str) -> dict[str, Any]:
    job = {
        "jobName": name,
        "jobId": "j-1",
        "jobQueue": QUEUE,
        "status": status,
        "startedAt": 0,
        "jobDefinition": JOB_DEF,
    }
    return {"jobs": [job]}


def _training_job(name: str, arn: str, status: str, data_prefix: str) -> dict[str, Any]:
    """A DescribeTrainingJob response with every member the model requires."""
    return {
        "TrainingJobName": name,
        "TrainingJobArn": arn,
        "TrainingJobStatus": status,
        "SecondaryStatus": "Starting" if status == "InProgress" else "Stopped",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/{data_prefix}/"},
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {
            "InstanceType": "ml.c5.2xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 7200},
        "CreationTime": datetime.datetime.now(datetime.UTC),
        "HyperParameters": {"s3_bucket": BUCKET, "s3_prefix": data_prefix},
    }


@pytest.mark.parametrize(("listed", "expected"), [([], None), (["other"], None)])
def test_missing_object_answered_with_403_reads_as_missing(
    listed: list[str], expected: None
) -> None:
    """Without ListBucket on the whole bucket S3 answers 403 for a missing key: the reader checks
    the (allowed) listing of that exact key before calling it missing."""
    from fanout.files import read_json
    from fanout.retry import Retrier

    client = _client("s3")
    key = "experiments/demo/run.json"
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_object",
            "AccessDenied",
            http_status_code=403,
            expected_params={"Bucket": "data-bucket", "Key": key},
        )
        stub.add_response(
            "list_objects_v2",
            {"Contents": [{"Key": f"{key}.{name}"} for name in listed]},
            {"Bucket": "data-bucket", "Prefix": key, "MaxKeys": 1},
        )
        assert read_json(client, Retrier(budget_seconds=5), "data-bucket", key) is expected
        stub.assert_no_pending_responses()


def test_a_real_403_on_an_existing_object_is_not_hidden() -> None:
    from botocore.exceptions import ClientError
    from fanout.files import read_json
    from fanout.retry import Retrier

    client = _client("s3")
    key = "experiments/demo/run.json"
    with Stubber(client) as stub:
        stub.add_client_error("get_object", "AccessDenied", http_status_code=403)
        stub.add_response("list_objects_v2", {"Contents": [{"Key": key}]})
        with pytest.raises(ClientError, match="AccessDenied"):
            read_json(client, Retrier(budget_seconds=5), "data-bucket", key)


@pytest.mark.parametrize(
    ("tags", "refused"),
    [
        ({f"t{i}": "x" for i in range(48)}, False),  # 50 per job, 2 of them the project's
        ({f"t{i}": "x" for i in range(49)}, True),
        ({"k" * 128: "v"}, False),
        ({"k" * 129: "v"}, True),
        ({"k": "v" * 256}, False),
        ({"k": "v" * 257}, True),
    ],
    ids=["48 tags", "49 tags", "key 128", "key 129", "value 256", "value 257"],
)
def test_lambda_tag_limits_at_their_edges(tags: dict[str, str], refused: bool) -> None:
    raw = {**make_props(1, "batch"), "Tags": tags}
    if refused:
        with pytest.raises(PropertyError, match="Tags"):
            parse_properties(raw)
    else:
        assert parse_properties(raw).tags == tags


@pytest.mark.parametrize(
    ("described", "expected", "stops"),
    [
        (None, "absent", False),
        ({"status": "InProgress", "prefix": f"{PREFIX}/runs/demo-0123abcd"}, "stopping", True),
        ({"status": "Completed", "prefix": f"{PREFIX}/runs/demo-0123abcd"}, "Completed", False),
        ({"status": "InProgress", "prefix": "experiments/other"}, "not ours (left alone)", False),
    ],
    ids=["absent", "running", "finished", "another experiment's"],
)
def test_trainer_stop_reports_what_it_found(
    described: dict[str, str] | None, expected: str, stops: bool
) -> None:
    """What `rollouts stop --json` and the failure reasons report as the trainer's state."""
    from fanout.retry import Retrier

    client = _client("sagemaker")
    name = "demo-0123abcd"
    with Stubber(client) as stub:
        if described is None:
            stub.add_client_error(
                "describe_training_job",
                "ValidationException",
                "Requested resource not found.",
                expected_params={"TrainingJobName": name},
            )
        else:
            job = _training_job(
                name,
                f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}",
                "InProgress",
                described["prefix"],
            )
            stub.add_response(
                "describe_training_job",
                {**job, "TrainingJobStatus": described["status"]},
                {"TrainingJobName": name},
            )
        if stops:
            stub.add_response("stop_training_job", {}, {"TrainingJobName": name})
        found = trainer.stop(client, Retrier(budget_seconds=5), name, (BUCKET, PREFIX))
        stub.assert_no_pending_responses()
    assert found == expected


def test_a_number_of_thousands_of_digits_is_out_of_range() -> None:
    with pytest.raises(PropertyError) as caught:
        parse_properties({**make_props(1, "batch"), "RolloutCount": "9" * 5000})
    assert str(caught.value).startswith("RolloutCount is '9999")
    assert str(caught.value).endswith("allowed: 1..1000")


def test_a_robomaker_batch_not_yet_describable_is_pending_not_failed() -> None:
    from fanout.retry import Retrier

    client = _client("robomaker")
    arn = f"arn:aws:robomaker:{REGION}:{ACCOUNT}:simulation-job-batch/sjb-new"
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_simulation_job_batch",
            "ResourceNotFoundException",
            "not found",
            expected_params={"batch": arn},
        )
        found = robomaker_backend.status(client, Retrier(budget_seconds=5), [arn], 2)
        stub.assert_no_pending_responses()
    assert (found.accepted, found.running, found.failure) == (False, 0, None)
