"""Fault matrix of the fan-out: each case asserts what ran, what was stopped and what was reported.

The Provider framework calls ``on_event`` once and then ``is_complete`` until it reports
completion or fails. ``on_event`` starts nothing; the first ``is_complete`` starts the run.
"""

from __future__ import annotations

import datetime
import json
import zlib
from typing import Any

import pytest
from fanout import batch_backend, files, handler
from fanout.errors import MAX_REASON, FanoutError, PropertyError, StartError
from fanout_builders import (
    BUCKET,
    PREFIX,
    QUEUE,
    client_error,
    make_asset,
    make_event,
    make_props,
)
from fanout_world import LambdaTimedOut, World

# The documented values (README, "The fan-out"), stated here so that a change of them in the
# code under test is noticed: is_complete runs for 5 minutes and keeps 90 s of them for stopping
# what it started; a run not up 38 minutes after planning fails (and a start attempt whose outcome
# is unknown is watched for that long).
IS_COMPLETE_TIMEOUT = 300.0
CLEANUP_RESERVE = 90.0
WAIT_LIMIT = 38 * 60.0


def _poll_killed_right_after_submit(
    world: World, monkeypatch: pytest.MonkeyPatch, props: dict, created: dict
) -> None:
    """One is_complete whose Lambda is killed just after SubmitJob took effect."""
    submit = batch_backend.submit

    def submit_then_die(*args: Any) -> Any:
        submit(*args)
        raise LambdaTimedOut

    monkeypatch.setattr(batch_backend, "submit", submit_then_die)
    with pytest.raises(LambdaTimedOut):
        world.poll(props, created)
    monkeypatch.setattr(batch_backend, "submit", submit)


def _env(job_request: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in job_request["containerOverrides"]["environment"]}


# --------------------------------------------------------------------------- on_event


@pytest.mark.parametrize("backend", ["batch", "robomaker"])
def test_on_event_plans_but_starts_nothing(world: World, backend: str) -> None:
    props = make_props(3, backend, video=True)
    world.put_asset(make_asset(props["Worlds"]))

    created = world.create(props)

    assert set(created) == {"PhysicalResourceId", "PlannedAt", "SharedYaml"}, "small"
    assert created["PhysicalResourceId"].startswith("demo-")
    assert world.cloud.calls == [], "no SageMaker, Batch or RoboMaker call at all"
    # Only the note of the latest request (fanout/request.json): no run file, ip/ untouched.
    assert world.listing() == [f"{PREFIX}/fanout/request.json"]
    latest = json.loads(world.read(f"{PREFIX}/fanout/request.json"))
    assert (latest["requestId"], latest["runId"]) == ("req-1", created["PhysicalResourceId"])


def test_batch_payload_over_the_quota_fails_on_event_and_starts_nothing(world: World) -> None:
    worlds = [f"a_very_long_track_name_that_keeps_going_{i:04d}" for i in range(1000)]
    props = make_props(1000, "batch", worlds=worlds)
    world.put_asset(make_asset(worlds))
    with pytest.raises(PropertyError, match=r"allowed: 30720 \(Batch job payload quota\)"):
        world.create(props)
    assert world.cloud.calls == [] and world.listing() == []


# --------------------------------------------------------------------------- throttling


def test_batch_throttling_burst_n100_starts_all_100_exactly_once(world: World) -> None:
    props = make_props(100, "batch", video=True)
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.throttle("SubmitJob", times=6)
    world.cloud.throttle("ListJobs", times=3)
    world.cloud.throttle("CreateTrainingJob", times=2)

    _, done = world.deploy(props)

    assert len(world.cloud.batch_jobs) == 1, "exactly one array job"
    job = next(iter(world.cloud.batch_jobs.values()))
    assert job["arrayProperties"]["size"] == 100
    env = _env(job["request"])
    assert env["ROLLOUT_VIDEO_STREAMS"].split(",") == [f"rollouts-demo-{i}" for i in range(100)]
    assert env["ROLLOUT_WORLD_NAMES"] == "reInvent2019_track", "one shared entry"
    assert len(world.cloud.training_jobs) == 1
    assert done["IsComplete"] is True and done["Data"]["RolloutJobId"] == job["jobId"]
    # Every throttled attempt was retried after a backoff sleep, none failed the deploy.
    assert len(world.sleeps) == 6 + 3 + 2
    # A throttled SubmitJob was refused (nothing started): it is retried as it is; the one
    # dedupe ListJobs (throttled 3 times) came before the first attempt.
    assert world.cloud.count("SubmitJob") == 7
    assert world.cloud.count("ListJobs") == 1 + 3


def test_batch_submit_whose_response_was_lost_is_not_submitted_twice(world: World) -> None:
    """ListJobs lags 75 s behind SubmitJob (eventual consistency): the job accepted by a submit
    whose response was lost is invisible to the next two polls, and still nothing resubmits."""
    props = make_props(100, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.list_lag = 75.0
    world.cloud.inject("SubmitJob", "ServerException", status=500, after_effect=True)
    created = world.create(props)

    assert world.poll(props, created) == {"IsComplete": False}, "unknown outcome: check later"
    for _ in range(2):  # the Provider polls every 30 s; ListJobs does not show the job yet
        world.now += 30
        assert world.poll(props, created) == {"IsComplete": False}
    assert world.cloud.count("SubmitJob") == 1
    world.now += 30
    done = world.poll(props, created)

    assert done["IsComplete"] is True
    (job_id,) = world.cloud.batch_jobs
    assert done["Data"]["RolloutJobId"] == job_id
    assert world.cloud.count("SubmitJob") == 1, "never submitted twice"
    # From now on the recorded id is used: DescribeJobs by id, no ListJobs.
    lists = world.cloud.count("ListJobs")
    world.poll(props, created)
    assert world.cloud.count("ListJobs") == lists and world.cloud.count("SubmitJob") == 1


def test_batch_submit_answered_with_garbage_is_an_unknown_outcome_not_a_failure(
    world: World,
) -> None:
    """The job was created but the answer could not be parsed (a botocore error, not a service
    error): the run is neither failed nor resubmitted; the next polls find the job."""
    from botocore.parsers import ResponseParserError

    props = make_props(8, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.list_lag = 45.0
    world.cloud.inject(
        "SubmitJob", "-", after_effect=True, exception=ResponseParserError("truncated body")
    )
    created = world.create(props)

    assert world.poll(props, created) == {"IsComplete": False}
    world.now += 30
    assert world.poll(props, created) == {"IsComplete": False}
    world.now += 30
    assert world.poll(props, created)["IsComplete"] is True
    assert world.cloud.count("SubmitJob") == 1
    assert world.cloud.active_trainers() != [], "the trainer was not torn down"


def test_concurrent_duplicate_delivery_cannot_submit_a_second_array_job(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deliveries of one Create poll at the same time: both read "no marker" and ListJobs
    (lagging) shows nothing. The marker write is conditional, so only the first submits."""
    props = make_props(4, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.list_lag = 300.0
    created = world.create(props)
    world.poll(props, created)  # delivery A claims and submits
    assert world.cloud.count("SubmitJob") == 1

    # Delivery B read the marker before A wrote it: it still believes nothing was claimed.
    read = files.read_json_versioned
    monkeypatch.setattr(
        files,
        "read_json_versioned",
        lambda s3, retry, bucket, key: (
            (None, None) if "/fanout/" in key else read(s3, retry, bucket, key)
        ),
    )
    assert world.poll(props, created) == {"IsComplete": False}, "lost the claim: poll again"
    assert world.cloud.count("SubmitJob") == 1, "never a second array job"
    assert world.cloud.count("StopTrainingJob") == 0, "and nothing torn down"


def test_a_submit_with_an_unknown_outcome_is_never_resubmitted_and_the_wait_limit_names_it(
    world: World,
) -> None:
    """A 5xx whose request was NOT processed looks exactly like one that was, and no lookup can
    prove the job absent: it is never resubmitted (a resubmit duplicates the array job whenever
    ListJobs lags longer than the pause before it). The run fails at the wait limit, naming the
    cause that kept it polling and how often."""
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.list_lag = 20.0
    world.cloud.inject("SubmitJob", "ServerException", status=500)
    created = world.create(props)

    polls = 0
    while world.now <= WAIT_LIMIT:
        assert world.poll(props, created) == {"IsComplete": False}
        polls += 1
        world.now += 30
    assert polls == 77
    with pytest.raises(StartError) as raised:
        world.poll(props, created)

    reason = str(raised.value)
    assert "not ACCEPTED after 38 min (limit 38 min, counted from planning)" in reason
    assert (
        "it last polled again because SubmitJob had an unknown outcome (ServerException "
        "(HTTP 500)) and ListJobs has not shown its job (76 polls in a row)"
    ) in reason
    assert reason.endswith("stopped: trainer stopping, 0 rollout job(s)")
    assert world.cloud.count("SubmitJob") == 1, "never submitted twice"
    assert world.cloud.active_trainers() == [] and world.cloud.batch_jobs == {}


def test_lambda_killed_right_after_submit_does_not_double_start(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The submit attempt is recorded before SubmitJob: a Lambda killed after it, with ListJobs
    lagging, makes the next poll wait instead of resubmitting."""
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.list_lag = 45.0
    created = world.create(props)
    _poll_killed_right_after_submit(world, monkeypatch, props, created)
    world.now += 30
    assert world.poll(props, created) == {"IsComplete": False}
    world.now += 30
    assert world.poll(props, created)["IsComplete"] is True
    assert world.cloud.count("SubmitJob") == 1 and len(world.cloud.batch_jobs) == 1


def test_robomaker_throttling_burst_n100_starts_all_100_exactly_once(world: World) -> None:
    props = make_props(100, "robomaker", video=True)
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.throttle("StartSimulationJobBatch", times=5)
    # The 6th attempt's response is lost after the batch was created: the token dedupes it.
    world.cloud.inject(
        "StartSimulationJobBatch", "InternalServerException", status=500, after_effect=True
    )

    created, done = world.deploy(props)

    assert done["IsComplete"] is True
    assert len(world.cloud.sim_batches) == 1
    batch = next(iter(world.cloud.sim_batches.values()))
    requests = batch["request"]["createSimulationJobRequests"]
    indexes = [
        r["simulationApplications"][0]["launchConfig"]["environmentVariables"]["ROLLOUT_IDX"]
        for r in requests
    ]
    assert sorted(indexes, key=int) == [str(i) for i in range(100)]
    tokens = {p["clientRequestToken"] for p in world.cloud.ops("StartSimulationJobBatch")}
    assert tokens == {f"{created['PhysicalResourceId']}-b0"}, "every attempt reuses one token"
    assert world.cloud.count("StartSimulationJobBatch") == 7


def test_throttling_during_is_complete_only_delays(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created, _ = world.deploy(props)
    world.cloud.throttle("DescribeTrainingJob", times=1000)
    world.cloud.calls.clear()
    started = world.now

    assert world.poll(props, created) == {"IsComplete": False}, "poll again later, no failure"
    assert world.cloud.job_calls() == [], "throttling alone stops nothing"
    work = IS_COMPLETE_TIMEOUT - CLEANUP_RESERVE
    assert work - 10 < world.now - started <= work, "retried until the invocation's deadline"


def test_one_deadline_per_invocation_not_per_call(world: World) -> None:
    """Two throttled calls in one is_complete share one deadline (remaining time - reserve)."""
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    world.cloud.throttle("CreateTrainingJob", times=20)  # ~80 s of backoff
    world.cloud.throttle("ListJobs", times=10_000)
    context = world.context(IS_COMPLETE_TIMEOUT)

    assert world.poll(props, created, context=context) == {"IsComplete": False}

    remaining_at_end = context.get_remaining_time_in_millis() / 1000
    assert remaining_at_end >= CLEANUP_RESERVE, "the reserve is untouched"
    assert world.now <= IS_COMPLETE_TIMEOUT - CLEANUP_RESERVE
    assert world.cloud.count("SubmitJob") == 0 and world.cloud.active_trainers() != []

    # The next invocation resumes: the trainer exists, so only the rollouts are started.
    world.cloud.faults.clear()
    done = world.poll(props, created, context=world.context(IS_COMPLETE_TIMEOUT))
    assert done["IsComplete"] is True
    assert world.cloud.count("CreateTrainingJob") == 21 and len(world.cloud.training_jobs) == 1
    assert len(world.cloud.batch_jobs) == 1


def test_a_short_lambda_context_shortens_the_deadline(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    world.cloud.throttle("CreateTrainingJob", times=10_000)

    world.poll(props, created, context=world.context(130))

    assert world.now <= 130 - CLEANUP_RESERVE


@pytest.mark.parametrize("backend", ["batch", "robomaker"])
def test_start_throttled_out_is_resumed_by_the_next_is_complete(world: World, backend: str) -> None:
    props = make_props(3, backend)
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    world.cloud.throttle("SubmitJob" if backend == "batch" else "StartSimulationJobBatch", 10_000)

    assert world.poll(props, created) == {"IsComplete": False}
    assert world.cloud.active_trainers() == [created["PhysicalResourceId"]]
    world.cloud.faults.clear()
    world.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/ip/done", Body=b"")  # the trainer is up

    assert world.poll(props, created)["IsComplete"] is True
    assert world.cloud.count("CreateTrainingJob") == 1
    assert len(world.cloud.batch_jobs) + len(world.cloud.sim_batches) == 1
    assert f"{PREFIX}/ip/done" in world.listing(), "a resumed start must not clear ip/ again"


# --------------------------------------------------------------------------- failures


def test_submit_failure_stops_the_trainer_and_reports_one_reason(world: World) -> None:
    props = make_props(4, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    world.cloud.inject("SubmitJob", "ClientException", message="Job queue rollouts is DISABLED")

    with pytest.raises(StartError) as raised:
        world.poll(props, created)

    message = str(raised.value)
    assert "\n" not in message
    assert "SubmitJob failed: ClientException: Job queue rollouts is DISABLED" in message
    assert "trainer stopping" in message
    assert world.cloud.active_trainers() == []
    assert world.cloud.count("StopTrainingJob") == 1
    assert world.cloud.batch_jobs == {}

    # CloudFormation then deletes the failed resource by that id: harmless, nothing left.
    before = world.cloud.job_calls()
    run_id = created["PhysicalResourceId"]
    handler.on_event(make_event("Delete", props, physical_id=run_id, request_id="req-del"), None)
    assert world.cloud.job_calls() == before


def test_a_huge_error_message_is_clipped_and_keeps_what_was_stopped(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    world.cloud.inject("SubmitJob", "ClientException", message="queue broken " * 800)
    # ... and the cleanup cannot stop the trainer: that part must survive the clipping.
    world.cloud.inject("StopTrainingJob", "AccessDeniedException", message="denied " * 200)

    with pytest.raises(StartError) as raised:
        world.poll(props, created)

    reason = str(raised.value)
    assert len(reason) <= MAX_REASON
    assert "queue broken queue broken" in reason and "[...]" in reason
    assert "; stopped: trainer not checked, 0 rollout job(s); could NOT stop: trainer: " in reason
    assert "StopTrainingJob failed: AccessDeniedException: denied" in reason
    assert reason.endswith("[...]")  # the long stop error itself is clipped, its start kept
    # What the framework sends CloudFormation: our reason plus its own pointer to the logs.
    response = {
        "Status": "FAILED",
        "Reason": f"{reason}\n\nLogs: /aws/lambda/{'x' * 64}\n",
        "PhysicalResourceId": created["PhysicalResourceId"],
        "StackId": "x" * 200,
        "RequestId": "x" * 36,
        "LogicalResourceId": "x" * 255,
        "Data": {},
    }
    assert len(json.dumps(response)) < 2048, "well under CloudFormation's 4 KB"


def test_every_error_is_clipped() -> None:
    assert len(str(FanoutError("x" * 10_000))) == MAX_REASON


def test_failure_after_k_of_n_rollouts_started_stops_all_of_them(world: World) -> None:
    """Batch: 3 of 8 children run, 1 failed -> the array job and the trainer are stopped."""
    props = make_props(8, "batch", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created, first = world.deploy(props)
    assert first == {"IsComplete": False}
    (job_id,) = world.cloud.batch_jobs
    world.cloud.set_trainer(created["PhysicalResourceId"], "InProgress", "Training")
    world.cloud.set_batch(job_id, "PENDING", {"RUNNING": 3, "RUNNABLE": 4, "FAILED": 1})

    with pytest.raises(StartError, match=r"1 of 8 rollouts of Batch job .* FAILED") as raised:
        world.poll(props, created)

    assert "stopped: trainer stopping, 1 rollout job(s)" in str(raised.value)
    assert world.cloud.active_batch_jobs() == []
    assert [p["jobId"] for p in world.cloud.ops("CancelJob")] == [job_id]
    assert [p["jobId"] for p in world.cloud.ops("TerminateJob")] == [job_id]
    assert world.cloud.active_trainers() == []


def test_a_failed_rollout_job_fails_the_run_with_its_reason(world: World) -> None:
    """A single rollout is a plain Batch job: its own FAILED state and reason end the run."""
    props = make_props(1, "batch", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created, first = world.deploy(props)
    assert first == {"IsComplete": False}
    (job_id,) = world.cloud.batch_jobs
    world.cloud.set_trainer(created["PhysicalResourceId"], "InProgress", "Training")
    world.cloud.batch_jobs[job_id]["statusReason"] = "CannotPullContainerError: not found"
    world.cloud.set_batch(job_id, "FAILED")

    with pytest.raises(StartError) as raised:
        world.poll(props, created)

    assert f"Batch job {job_id} FAILED: CannotPullContainerError: not found" in str(raised.value)
    assert world.cloud.active_trainers() == []


def test_a_single_rollout_counts_as_running_only_once_it_runs(world: World) -> None:
    props = make_props(1, "batch", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created, first = world.deploy(props)
    assert first == {"IsComplete": False}, "the trainer is not training yet"
    (job_id,) = world.cloud.batch_jobs
    world.cloud.set_trainer(created["PhysicalResourceId"], "InProgress", "Training")
    world.cloud.set_batch(job_id, "RUNNABLE")
    assert world.poll(props, created) == {"IsComplete": False}
    world.cloud.set_batch(job_id, "RUNNING")
    done = world.poll(props, created)
    assert done["IsComplete"] is True and done["Data"]["RolloutJobId"] == job_id


def test_robomaker_failure_after_k_of_n_started_cancels_the_batch(world: World) -> None:
    props = make_props(5, "robomaker", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created, _ = world.deploy(props)
    (batch,) = world.cloud.sim_batches.values()
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
    props = make_props(3, "batch", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created, _ = world.deploy(props)
    (job_id,) = world.cloud.batch_jobs
    world.cloud.set_batch(job_id, "RUNNABLE")
    world.cloud.set_trainer(
        created["PhysicalResourceId"], "Failed", "Failed", reason="CapacityError: no ml.c5.2xlarge"
    )

    with pytest.raises(StartError, match=r"is Failed: CapacityError: no ml\.c5\.2xlarge"):
        world.poll(props, created)

    assert world.cloud.active_batch_jobs() == []
    assert world.cloud.count("StopTrainingJob") == 0, "a failed trainer needs no stop"
    assert not world.listing(f"{PREFIX}/run.json")


def test_a_run_that_does_not_come_up_in_time_is_stopped_before_the_provider_gives_up(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = make_props(2, "batch", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created, _ = world.deploy(props)
    run_id = created["PhysicalResourceId"]
    # The limit counts from on_event's PlannedAt, not from the trainer's (later) creation.
    world.cloud.training_jobs[run_id]["CreationTime"] = datetime.datetime.now(datetime.UTC)
    world.now += 30 * 60
    assert world.poll(props, created) == {"IsComplete": False}, "30 min: still waiting"

    world.now += 9 * 60
    with pytest.raises(StartError, match=r"not RUNNING after 39 min \(limit 38 min"):
        world.poll(props, created)
    assert world.cloud.active_trainers() == [] and world.cloud.active_batch_jobs() == []


def test_the_wait_limit_also_ends_a_run_that_is_throttled_throughout(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    world.cloud.throttle("SubmitJob", times=10_000)
    assert world.poll(props, created) == {"IsComplete": False}
    world.cloud.faults.clear()
    world.cloud.throttle("DescribeTrainingJob", times=10_000)
    world.now += 39 * 60
    world.cloud.calls.clear()

    with pytest.raises(StartError, match=r"not ACCEPTED after 4\d min \(limit 38 min"):
        world.poll(props, created)
    world.cloud.faults.clear()
    handler.on_event(make_event("Delete", props, physical_id=created["PhysicalResourceId"]), None)
    assert world.cloud.active_trainers() == []


# --------------------------------------------------------------------------- duplicates


@pytest.mark.parametrize("backend", ["batch", "robomaker"])
def test_duplicate_create_delivery_starts_nothing_twice(world: World, backend: str) -> None:
    props = make_props(3, backend)
    world.put_asset(make_asset(props["Worlds"]))
    first, done = world.deploy(props)
    # The trainer came up and published its address before the duplicate arrived.
    world.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/ip/done", Body=b"")

    second, done_again = world.deploy(props)

    assert second == first
    assert done_again == done
    assert world.cloud.count("CreateTrainingJob") == 1
    assert len(world.cloud.batch_jobs) + len(world.cloud.sim_batches) == 1
    assert f"{PREFIX}/ip/done" in world.listing(), (
        "a duplicate must not hide a live trainer's address"
    )


def test_trainer_name_taken_by_another_experiment_is_not_adopted_or_stopped(world: World) -> None:
    props = make_props(1, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    run_id = created["PhysicalResourceId"]
    world.cloud.training_jobs[run_id] = {
        "TrainingJobName": run_id,
        "TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{run_id}",
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Training",
        "HyperParameters": {"s3_bucket": BUCKET, "s3_prefix": "experiments/other"},
    }

    with pytest.raises(StartError) as caught:
        world.poll(props, created)
    assert (
        f"training job {run_id} exists but trains s3://{BUCKET}/experiments/other, not "
        f"s3://{BUCKET}/{PREFIX}/runs/{run_id}; refusing to adopt it"
    ) in str(caught.value)
    handler.on_event(make_event("Delete", props, physical_id=run_id, request_id="req-del"), None)

    assert world.cloud.active_trainers() == [run_id], "the other experiment's trainer runs on"
    assert world.cloud.count("StopTrainingJob") == 0 and world.cloud.count("SubmitJob") == 0


# --------------------------------------------------------------------------- delete


def test_cleanup_after_a_failed_start_stops_the_job_it_knows_despite_listjobs_lag(
    world: World,
) -> None:
    """ListJobs does not show the just-submitted job yet: the cleanup stops it by its id."""
    props = make_props(3, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.list_lag = 600.0
    created = world.create(props)
    world.cloud.inject("DescribeJobs", "ClientException", message="broken", times=1)

    with pytest.raises(StartError, match="stopped: trainer stopping, 1 rollout job"):
        world.poll(props, created)

    assert world.cloud.active_batch_jobs() == [] and world.cloud.active_trainers() == []


def test_delete_throttled_out_continues_in_is_complete_instead_of_failing(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created, _ = world.deploy(props)
    run_id = created["PhysicalResourceId"]
    world.cloud.throttle("StopTrainingJob", times=10_000)
    delete = make_event("Delete", props, physical_id=run_id, request_id="req-del")

    result = handler.on_event(delete, None)  # no exception: throttling never fails a Delete
    assert result == {"PhysicalResourceId": run_id, "StopPending": True}
    assert handler.is_complete({**delete, **result}, None) == {"IsComplete": False}
    assert world.cloud.active_trainers() == [run_id]
    world.cloud.faults.clear()
    assert handler.is_complete({**delete, **result}, None) == {"IsComplete": True}
    assert world.cloud.active_trainers() == [] and world.cloud.active_batch_jobs() == []


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
def test_delete_of_a_started_run_then_delete_twice(world: World, backend: str) -> None:
    props = make_props(4, backend, wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created, first = world.deploy(props)  # started, never complete
    assert first == {"IsComplete": False}
    run_id = created["PhysicalResourceId"]
    delete = make_event("Delete", props, physical_id=run_id, request_id="req-del")
    world.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/model/checkpoint", Body=b"x")
    keys_before = world.listing()

    handler.on_event(delete, None)
    assert world.cloud.active_trainers() == []
    assert world.cloud.active_batch_jobs() == [] and world.cloud.active_sim_batches() == []
    stops = world.cloud.job_calls()

    handler.on_event(delete, None)  # CloudFormation may deliver it again
    assert world.cloud.job_calls() == stops, "the second Delete finds nothing left to stop"
    assert set(keys_before) <= set(world.listing()), "S3 data is never deleted"


def test_delete_finds_jobs_by_name_when_properties_no_longer_validate(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created, _ = world.deploy(props)
    broken = {**props, "RolloutCount": "zero"}

    handler.on_event(make_event("Delete", broken, physical_id=created["PhysicalResourceId"]), None)

    assert world.cloud.active_trainers() == [] and world.cloud.active_batch_jobs() == []


@pytest.mark.parametrize("how", ["is_complete timed out", "its cleanup was refused"])
def test_delete_after_is_complete_failed_mid_start_stops_what_still_runs(
    world: World, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """is_complete fails after the trainer and the array job were started, and leaves them
    running; the framework reports FAILED with the run id, and CloudFormation's Delete of that id
    must stop them."""
    props = make_props(3, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    run_id = created["PhysicalResourceId"]
    world.cloud.list_lag = 5.0  # the Delete comes later: ListJobs shows the job by then
    if how == "is_complete timed out":
        _poll_killed_right_after_submit(world, monkeypatch, props, created)
        assert len(world.cloud.active_batch_jobs()) == 1
    else:
        # The first status poll fails for good (4 server errors); then the cleanup's own lookups
        # are refused: its ListJobs (the 2nd, after the dedupe before submit) and its
        # DescribeTrainingJob (the 4th, after "not found", "just created" and the fresh look
        # after the starts).
        world.cloud.inject("DescribeJobs", "ServerException", status=500, times=4)
        world.cloud.inject("ListJobs", "AccessDeniedException", times=1, skip=1)
        world.cloud.inject("DescribeTrainingJob", "AccessDeniedException", times=1, skip=3)
        with pytest.raises(StartError, match=r"could NOT stop: rollouts: .*; trainer: "):
            world.poll(props, created)
        # The job id it knew was stopped by id although ListJobs was refused.
        assert world.cloud.active_batch_jobs() == []
        assert len(world.cloud.ops("CancelJob")) == 1
    assert world.cloud.active_trainers() == [run_id], "left running by the failed is_complete"
    world.now += 30

    handler.on_event(make_event("Delete", props, physical_id=run_id, request_id="req-del"), None)

    assert world.cloud.active_trainers() == []
    assert world.cloud.active_batch_jobs() == []


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
        # A quote would break out of the single-quoted YAML values the prefix is filled into.
        ({"Prefix": "experiments/it's"}, 'Prefix is "experiments/it\'s"'),
        ({"WaitFor": "DONE"}, "WaitFor is 'DONE'; allowed: ACCEPTED | RUNNING"),
        ({"Colour": "red"}, "unknown property Colour"),
        ({"Batch": None}, "missing property Batch"),
        (
            {"RoboMaker": {"ComputeType": "CPU"}},
            "RoboMaker must not be set when Backend is 'batch'",
        ),
        ({"Tags": {"aws:x": "y"}}, "Tags key 'aws:x' uses a reserved prefix"),
        ({"Tags": {"team": "r&d"}}, "Tags.team is 'r&d'; allowed: 0-256 of"),
        ({"Tags": {"k" * 129: "v"}}, "is invalid; allowed: 1-128 of"),
        ({"Tags": {"team": "v" * 257}}, "allowed: 0-256 of"),
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
            ("Trainer", "PretrainedCheckpoint"),
            "last",
            "Trainer.PretrainedCheckpoint needs Trainer.PretrainedBucket",
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


def test_a_corrupt_asset_of_any_error_type_is_one_clipped_line(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))

    def broken(*_: Any) -> Any:
        raise zlib.error("Error -3 while decompressing data: invalid block type " + "x" * 3000)

    monkeypatch.setattr(files, "parse_asset", broken)
    with pytest.raises(FanoutError) as raised:
        world.create(props)
    assert str(raised.value).startswith("error: Error -3 while decompressing")
    assert len(str(raised.value)) <= MAX_REASON and "\n" not in str(raised.value)


def test_unexpected_errors_become_one_line_reasons(world: World) -> None:
    props = make_props(1, "batch")
    # The asset object does not exist: a ClientError from S3 before anything started.
    with pytest.raises(FanoutError) as raised:
        world.create(props)
    assert str(raised.value).startswith("GetObject failed: NoSuchKey")
    assert world.cloud.calls == []


def test_run_json_is_not_written_before_completion(world: World) -> None:
    props = make_props(2, "batch", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created, first = world.deploy(props)
    assert first == {"IsComplete": False}
    assert f"{PREFIX}/run.json" not in world.listing()
    world.cloud.set_trainer(created["PhysicalResourceId"], "InProgress", "Training")
    (job_id,) = world.cloud.batch_jobs
    world.cloud.set_batch(job_id, "PENDING", {"RUNNING": 2})
    done = world.poll(props, created)
    assert done["IsComplete"] is True
    manifest = json.loads(world.read(f"{PREFIX}/run.json"))
    assert manifest["runId"] == created["PhysicalResourceId"]
    # A fingerprint of the properties: 16 hex digits, blind to the ServiceToken only.
    fingerprint = manifest["propertiesHash"]
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert handler.properties_hash({**props, "ServiceToken": "arn:other"}) == fingerprint
    assert handler.properties_hash({**props, "Tags": {"team": "other"}}) != fingerprint
    assert QUEUE not in json.dumps(done)


@pytest.mark.parametrize(
    ("s3_prefix", "ours"),
    [
        (f"{PREFIX}/runs/demo-0a0b0c0d", True),  # the run's own data prefix
        (PREFIX, True),  # a run started before runs had their own prefix
        (f"{PREFIX}/runs/demo-11111111", False),  # another run's prefix
        ("experiments/demo-two", False),
    ],
)
def test_a_trainer_is_ours_only_with_its_runs_data(s3_prefix: str, ours: bool) -> None:
    from fanout import trainer

    job = {
        "TrainingJobName": "demo-0a0b0c0d",
        "HyperParameters": {"s3_bucket": BUCKET, "s3_prefix": s3_prefix},
    }
    assert trainer.is_ours(job, BUCKET, PREFIX) is ours
    assert (
        trainer.is_ours(
            {**job, "HyperParameters": {"s3_bucket": "x", "s3_prefix": s3_prefix}}, BUCKET, PREFIX
        )
        is False
    )


def _refuse_writes(
    monkeypatch: pytest.MonkeyPatch, suffix: str, code: str, status: int, *, skip: int = 0
) -> None:
    """Refuse every write of a key ending in ``suffix`` (or under ``suffix/``) after ``skip``."""
    write = files.write_json
    allowed = [skip]

    def refusing(s3: Any, retry: Any, bucket: str, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.endswith(suffix) or f"/{suffix}/" in key:
            if allowed[0] <= 0:
                raise client_error(code, status)
            allowed[0] -= 1
        return write(s3, retry, bucket, key, *args, **kwargs)

    monkeypatch.setattr(files, "write_json", refusing)


def test_a_refused_run_record_fails_the_run_at_once_before_anything_starts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its record nothing may start; a refusal is final, so the run fails on the first
    poll with that reason (not 38 minutes later), before its trainer is created."""
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    _refuse_writes(monkeypatch, "fanout", "AccessDenied", 403)

    with pytest.raises(StartError) as raised:
        world.poll(props, created)

    reason = str(raised.value)
    rid = created["PhysicalResourceId"]
    assert f"the run record s3://{BUCKET}/{PREFIX}/fanout/{rid}.json cannot be written" in reason
    assert "AccessDenied" in reason and "nothing is started without it" in reason
    assert world.cloud.count("CreateTrainingJob") == 0 and world.cloud.count("SubmitJob") == 0


def test_a_refused_submit_claim_fails_the_run_at_once_and_stops_its_trainer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record was created, then the bucket starts refusing (a policy change): the claim of
    the submit cannot be written, so the run fails at once and its trainer is stopped."""
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    _refuse_writes(monkeypatch, "fanout", "AccessDenied", 403, skip=1)

    with pytest.raises(
        StartError, match=r"cannot be written .*AccessDenied.* stopped: trainer stopping"
    ):
        world.poll(props, created)

    assert world.cloud.count("CreateTrainingJob") == 1 and world.cloud.count("SubmitJob") == 0
    assert world.cloud.active_trainers() == []


def test_a_run_record_write_that_fails_for_now_polls_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    write = files.write_json
    _refuse_writes(monkeypatch, "fanout", "InternalError", 500)
    assert world.poll(props, created) == {"IsComplete": False}
    assert world.cloud.count("SubmitJob") == 0
    monkeypatch.setattr(files, "write_json", write)
    world.now += 30
    assert world.poll(props, created)["IsComplete"] is True
    assert world.cloud.count("SubmitJob") == 1


def test_an_accepted_run_whose_record_is_refused_still_succeeds(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    _refuse_writes(monkeypatch, "run.json", "AccessDenied", 403)
    created, done = world.deploy(props)
    assert done["IsComplete"] is True
    assert done["Data"]["RunId"] == created["PhysicalResourceId"]
    assert f"{PREFIX}/run.json" not in world.listing()
    assert world.cloud.active_trainers() == [created["PhysicalResourceId"]]


def _foreign_job(world: World, name: str) -> str:
    """A running Batch job of another experiment, in the same queue."""
    submitted = world.cloud._SubmitJob({"jobName": name, "jobQueue": QUEUE, "jobDefinition": "jd"})
    job_id = str(submitted["jobId"])
    world.cloud.set_batch(job_id, "RUNNING")
    return job_id


def test_a_tampered_submit_record_cannot_stop_another_experiments_job(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created, _ = world.deploy(props)
    run_id = created["PhysicalResourceId"]
    foreign = _foreign_job(world, "other-0a0b0c0d")
    world.s3.put_object(
        Bucket=BUCKET,
        Key=f"{PREFIX}/fanout/{run_id}.json",
        Body=json.dumps({"runId": run_id, "batchJobId": foreign}),
    )

    handler.on_event(make_event("Delete", props, physical_id=run_id, request_id="req-d"), None)

    assert foreign in world.cloud.active_batch_jobs(), "another experiment's job runs on"
    assert [j for j in world.cloud.active_batch_jobs() if j != foreign] == [], "ours stopped"
    assert world.cloud.active_trainers() == []


def test_a_tampered_run_record_cannot_name_another_experiments_run(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created, _ = world.deploy(props)
    run_id = created["PhysicalResourceId"]
    foreign = _foreign_job(world, "other-0a0b0c0d")
    record = json.loads(world.read(f"{PREFIX}/run.json"))
    record["unstoppedRuns"] = [
        {"runId": "other-0a0b0c0d", "backend": "batch", "jobQueue": QUEUE},
        {"runId": "demo-99999999", "backend": "batch", "jobQueue": "arn:aws:batch:x:1:job-queue/q"},
    ]
    world.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/run.json", Body=json.dumps(record))

    handler.on_event(make_event("Delete", props, physical_id=run_id, request_id="req-d"), None)

    assert foreign in world.cloud.active_batch_jobs()
    # The experiment's own earlier run is looked for in this stack's queue, not the record's.
    listed = [p["jobQueue"] for p in world.cloud.ops("ListJobs")]
    assert set(listed) == {QUEUE}
