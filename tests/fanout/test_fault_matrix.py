"""The issue's fault matrix: each case asserts what ran and what was stopped."""

from __future__ import annotations

import json

import pytest
from fanout import handler
from fanout.errors import FanoutError, PropertyError, StartError
from fanout_builders import PREFIX, QUEUE, make_asset, make_event, make_props
from fanout_world import World


def _env(job_request: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in job_request["containerOverrides"]["environment"]}


# --------------------------------------------------------------------------- throttling


def test_batch_throttling_burst_n100_starts_all_100_exactly_once(world: World) -> None:
    props = make_props(100, "batch", video=True)
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.throttle("SubmitJob", times=6)
    world.cloud.throttle("ListJobs", times=3)
    world.cloud.throttle("CreateTrainingJob", times=2)

    result = world.create(props)

    assert len(world.cloud.batch_jobs) == 1, "exactly one array job"
    job = next(iter(world.cloud.batch_jobs.values()))
    assert job["arrayProperties"]["size"] == 100
    env = _env(job["request"])
    assert env["ROLLOUT_VIDEO_STREAMS"].split(",") == [f"rollouts-demo-{i}" for i in range(100)]
    assert env["ROLLOUT_WORLD_NAMES"] == "reInvent2019_track", "one shared entry"
    assert len(world.cloud.training_jobs) == 1
    assert result["RunState"]["RolloutJobId"] == job["jobId"]
    # Every throttled attempt was retried after a backoff sleep, none failed the deploy.
    assert len(world.sleeps) == 6 + 3 + 2
    # Each submit attempt was preceded by a dedupe ListJobs.
    assert world.cloud.count("SubmitJob") == 7
    assert world.cloud.count("ListJobs") >= 7


def test_batch_submit_whose_response_was_lost_is_not_submitted_twice(world: World) -> None:
    props = make_props(100, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    # The job is accepted but the client sees a 500: the retry's ListJobs must find it.
    world.cloud.inject("SubmitJob", "ServerException", status=500, after_effect=True)

    world.create(props)

    assert len(world.cloud.batch_jobs) == 1
    assert world.cloud.count("SubmitJob") == 1


def test_robomaker_throttling_burst_n100_starts_all_100_exactly_once(world: World) -> None:
    props = make_props(100, "robomaker", video=True)
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.throttle("StartSimulationJobBatch", times=5)
    # The 6th attempt's response is lost after the batch was created: the token dedupes it.
    world.cloud.inject(
        "StartSimulationJobBatch", "InternalServerException", status=500, after_effect=True
    )

    result = world.create(props)

    assert len(world.cloud.sim_batches) == 1
    batch = next(iter(world.cloud.sim_batches.values()))
    requests = batch["request"]["createSimulationJobRequests"]
    indexes = [
        r["simulationApplications"][0]["launchConfig"]["environmentVariables"]["ROLLOUT_IDX"]
        for r in requests
    ]
    assert sorted(indexes, key=int) == [str(i) for i in range(100)]
    tokens = {p["clientRequestToken"] for p in world.cloud.ops("StartSimulationJobBatch")}
    assert tokens == {f"{result['PhysicalResourceId']}-b0"}, "every attempt reuses one token"
    assert world.cloud.count("StartSimulationJobBatch") == 7


def test_throttling_during_is_complete_only_delays(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    world.cloud.throttle("DescribeTrainingJob", times=1000)
    world.cloud.calls.clear()

    assert world.poll(props, created) == {"IsComplete": False}, "poll again later, no failure"
    assert world.cloud.job_calls() == [], "throttling alone stops nothing"
    assert sum(world.sleeps) <= 600 + 20, "gave up within is_complete's budget"


# --------------------------------------------------------------------------- failures


def test_submit_failure_stops_the_trainer_and_reports_one_reason(world: World) -> None:
    props = make_props(4, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.inject("SubmitJob", "ClientException", message="Job queue rollouts is DISABLED")

    with pytest.raises(StartError) as raised:
        world.create(props)

    message = str(raised.value)
    assert "\n" not in message
    assert "SubmitJob failed: ClientException: Job queue rollouts is DISABLED" in message
    assert "trainer stopping" in message
    assert world.cloud.active_trainers() == []
    assert world.cloud.count("StopTrainingJob") == 1
    assert world.cloud.batch_jobs == {}


def test_failure_after_k_of_n_rollouts_started_stops_all_of_them(world: World) -> None:
    """Batch: 3 of 8 children run, 1 failed -> the array job and the trainer are stopped."""
    props = make_props(8, "batch", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    job_id = created["RunState"]["RolloutJobId"]
    world.cloud.set_trainer(created["PhysicalResourceId"], "InProgress", "Training")
    world.cloud.set_batch(job_id, "PENDING", {"RUNNING": 3, "RUNNABLE": 4, "FAILED": 1})

    with pytest.raises(StartError, match=r"1 of 8 rollouts of Batch job .* FAILED") as raised:
        world.poll(props, created)

    assert "stopped: trainer stopping, 1 rollout job(s)" in str(raised.value)
    assert world.cloud.active_batch_jobs() == []
    assert [p["jobId"] for p in world.cloud.ops("CancelJob")] == [job_id]
    assert [p["jobId"] for p in world.cloud.ops("TerminateJob")] == [job_id]
    assert world.cloud.active_trainers() == []


def test_robomaker_failure_after_k_of_n_started_cancels_the_batch(world: World) -> None:
    props = make_props(5, "robomaker")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    (arn,) = created["RunState"]["SimulationJobBatchArns"]
    batch = world.cloud.sim_batches[arn]
    for job in batch["createdRequests"][:3]:
        job["status"] = "Running"
    batch["failedRequests"] = [
        {"failureCode": "SubnetIpLimitExceeded", "failureReason": "no IPs left"}
    ]

    with pytest.raises(StartError, match="SubnetIpLimitExceeded: no IPs left"):
        world.poll(props, created)

    assert world.cloud.active_sim_batches() == []
    assert all(j["status"] == "Canceled" for j in batch["createdRequests"][:3])
    assert world.cloud.active_trainers() == []


def test_trainer_failing_while_rollouts_pending(world: World) -> None:
    props = make_props(3, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    job_id = created["RunState"]["RolloutJobId"]
    world.cloud.set_batch(job_id, "RUNNABLE")
    world.cloud.set_trainer(
        created["PhysicalResourceId"], "Failed", "Failed", reason="CapacityError: no ml.c5.2xlarge"
    )

    with pytest.raises(StartError, match=r"is Failed: CapacityError: no ml\.c5\.2xlarge"):
        world.poll(props, created)

    assert world.cloud.active_batch_jobs() == []
    assert world.cloud.count("StopTrainingJob") == 0, "a failed trainer needs no stop"
    assert not world.listing(f"{PREFIX}/run.json")


# --------------------------------------------------------------------------- duplicates


@pytest.mark.parametrize("backend", ["batch", "robomaker"])
def test_duplicate_create_delivery_starts_nothing_twice(world: World, backend: str) -> None:
    props = make_props(3, backend)
    world.put_asset(make_asset(props["Worlds"]))
    first = world.create(props)
    # The trainer came up and published its address before the duplicate arrived.
    world.s3.put_object(Bucket="platform-data-bucket", Key=f"{PREFIX}/ip/done", Body=b"")

    second = world.create(props)

    assert second["PhysicalResourceId"] == first["PhysicalResourceId"]
    assert second["RunState"] == first["RunState"]
    assert world.cloud.count("CreateTrainingJob") == 1
    assert len(world.cloud.batch_jobs) + len(world.cloud.sim_batches) == 1
    assert f"{PREFIX}/ip/done" in world.listing(), (
        "a duplicate must not hide a live trainer's address"
    )


def test_trainer_name_taken_by_another_experiment_is_not_adopted_or_stopped(world: World) -> None:
    props = make_props(1, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    run_id = world.create(props)["PhysicalResourceId"]
    world.cloud.training_jobs[run_id]["HyperParameters"]["s3_prefix"] = "experiments/other"
    world.cloud.calls.clear()

    with pytest.raises(StartError, match="refusing to adopt"):
        world.create(props)
    assert world.cloud.job_calls() == []


# --------------------------------------------------------------------------- delete


def test_delete_with_nothing_running(world: World) -> None:
    props = make_props(2, "batch")
    result = handler.on_event(make_event("Delete", props, physical_id="demo-0123abcd"), None)
    assert result == {"PhysicalResourceId": "demo-0123abcd"}
    assert world.cloud.job_calls() == []
    assert [op for op, _ in world.cloud.calls] == ["ListJobs", "DescribeTrainingJob"]


def test_delete_of_an_id_that_is_no_run_makes_no_calls(world: World) -> None:
    props = make_props(2, "batch")
    handler.on_event(make_event("Delete", props, physical_id="Run-CREATE_FAILED"), None)
    assert world.cloud.calls == []


@pytest.mark.parametrize("backend", ["batch", "robomaker"])
def test_delete_after_partial_create_then_delete_twice(world: World, backend: str) -> None:
    props = make_props(4, backend)
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)  # is_complete never succeeded
    run_id = created["PhysicalResourceId"]
    delete = make_event("Delete", props, physical_id=run_id, request_id="req-del")
    world.s3.put_object(Bucket="platform-data-bucket", Key=f"{PREFIX}/model/checkpoint", Body=b"x")
    keys_before = world.listing()

    handler.on_event(delete, None)
    assert world.cloud.active_trainers() == []
    assert world.cloud.active_batch_jobs() == [] and world.cloud.active_sim_batches() == []
    stops = world.cloud.job_calls()

    handler.on_event(delete, None)  # CloudFormation may deliver it again
    assert world.cloud.job_calls() == stops, "the second Delete finds nothing left to stop"
    assert world.listing() == keys_before, "S3 data is never deleted"


def test_delete_finds_jobs_by_name_when_properties_no_longer_validate(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    run_id = world.create(props)["PhysicalResourceId"]
    broken = {**props, "RolloutCount": "zero"}

    handler.on_event(make_event("Delete", broken, physical_id=run_id), None)

    assert world.cloud.active_trainers() == [] and world.cloud.active_batch_jobs() == []


def test_delete_after_crash_between_trainer_and_rollouts(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.inject("ListJobs", "AccessDeniedException", times=1)  # on_event dies mid-way
    with pytest.raises(StartError):
        world.create(props)
    # Even so, whatever is left is found by name on Delete.
    run_id = next(iter(world.cloud.training_jobs))
    handler.on_event(make_event("Delete", props, physical_id=run_id), None)
    assert world.cloud.active_trainers() == []


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"Backend": "ecs"}, "Backend is 'ecs'; allowed: batch | robomaker"),
        ({"RolloutCount": "1001"}, "RolloutCount is 1001; allowed: 1..1000"),
        ({"RolloutCount": "two"}, "RolloutCount is 'two'; allowed: 1..1000"),
        ({"Worlds": ["a"]}, "Worlds has 1 entries; allowed: 2..2"),
        ({"Worlds": ["a,b", "c"]}, "Worlds[0] is 'a,b'"),
        (
            {"VideoStreams": ["s0"]},
            "VideoStreams has 1 entries; allowed: 0 (video off) or RolloutCount=2",
        ),
        ({"Experiment": "Demo"}, "Experiment is 'Demo'"),
        ({"Prefix": "experiments/demo/"}, "Prefix is 'experiments/demo/'"),
        ({"WaitFor": "DONE"}, "WaitFor is 'DONE'; allowed: ACCEPTED | RUNNING"),
        ({"Colour": "red"}, "unknown property Colour"),
        ({"Batch": None}, "missing property Batch"),
        (
            {"RoboMaker": {"ComputeType": "CPU"}},
            "RoboMaker must not be set when Backend is 'batch'",
        ),
        ({"Tags": {"aws:x": "y"}}, "Tags key 'aws:x' uses a reserved prefix"),
    ],
)
def test_malformed_properties_fail_clearly_and_start_nothing(
    world: World, change: dict, expected: str
) -> None:
    props = {k: v for k, v in {**make_props(2, "batch"), **change}.items() if v is not None}
    with pytest.raises(PropertyError) as raised:
        world.create(props)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value) and "Traceback" not in str(raised.value)
    assert world.cloud.calls == []
    assert world.listing() == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("Trainer", "VolumeSizeGb"), "-1", "Trainer.VolumeSizeGb is -1; allowed: 1..16384"),
        (("Trainer", "Subnets"), "subnet-0aaaaaaaaaaaaaaa1", "Trainer.Subnets must be a list"),
        (
            ("Trainer", "RoleArn"),
            "trainer-role",
            "Trainer.RoleArn is 'trainer-role'; allowed: an IAM role ARN",
        ),
        (
            ("Batch", "AttemptDurationSeconds"),
            "30",
            "Batch.AttemptDurationSeconds is 30; allowed: 60..",
        ),
    ],
)
def test_malformed_nested_properties(
    world: World, path: tuple[str, str], value: str, expected: str
) -> None:
    props = make_props(2, "batch")
    props[path[0]] = {**props[path[0]], path[1]: value}
    with pytest.raises(
        PropertyError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        world.create(props)
    assert world.cloud.calls == []


def test_asset_that_does_not_match_rollout_count_starts_nothing(world: World) -> None:
    props = make_props(3, "batch")
    world.put_asset(make_asset(["reInvent2019_track"] * 2))
    with pytest.raises(FanoutError, match="lists 2 worker_params files; RolloutCount is 3"):
        world.create(props)
    assert world.cloud.calls == [] and world.listing() == []


def test_unexpected_errors_become_one_line_reasons(world: World) -> None:
    props = make_props(1, "batch")
    # The asset object does not exist: a ClientError from S3 before anything started.
    with pytest.raises(FanoutError) as raised:
        world.create(props)
    assert str(raised.value).startswith("GetObject failed: NoSuchKey")
    assert world.cloud.job_calls() == []


def test_run_json_is_not_written_before_completion(world: World) -> None:
    props = make_props(2, "batch", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    assert world.poll(props, created) == {"IsComplete": False}
    assert f"{PREFIX}/run.json" not in world.listing()
    world.cloud.set_trainer(created["PhysicalResourceId"], "InProgress", "Training")
    world.cloud.set_batch(created["RunState"]["RolloutJobId"], "PENDING", {"RUNNING": 2})
    done = world.poll(props, created)
    assert done["IsComplete"] is True
    manifest = json.loads(world.read(f"{PREFIX}/run.json"))
    assert manifest["runId"] == created["PhysicalResourceId"]
    assert QUEUE not in json.dumps(done)
