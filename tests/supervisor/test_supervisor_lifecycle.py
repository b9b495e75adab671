"""The run supervisor over a fake account: each of the four ways a run outlived its purpose
before it existed, and the run lifecycle rules (README.md, "The run supervisor")."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from supervisor_world import BUCKET, Fault, World

Supervise = Callable[..., dict[str, Any]]
RUN = "demo-0a1b2c3d"
OTHER = "demo-9f8e7d6c"


def _deployed(world: World, run: str = RUN, count: int = 3, **supervision: Any) -> str:
    """A stack whose run resource is ``run``, with its trainer and rollouts running."""
    world.add_stack("demo", run_id=run, supervision=supervision or None)
    world.start_trainer(run)
    job = world.submit_rollouts(run, count)
    world.run_all()
    return job


def _record(world: World, run: str = RUN) -> dict[str, Any]:
    body = world.objects[f"experiments/demo/supervisor/{run}.json"][0]
    return json.loads(body)


# --------------------------------------------------------------- 1. trainer ends -> rollouts end


def test_a_trainer_at_its_time_limit_gets_its_rollouts_finished_then_stopped(
    world: World, supervise: Supervise
) -> None:
    # Given a run whose trainer SageMaker stopped at its time limit (no model/.finished written)
    _deployed(world)
    world.now += 3600
    world.end_trainer(RUN, "Stopped", "MaxRuntimeExceeded")
    # When the supervisor sees it at once
    supervise({"source": "aws.sagemaker", "detail": {"TrainingJobName": RUN}})
    # Then the rollouts are told to finish and the outcome says why the run ended
    assert f"experiments/demo/runs/{RUN}/model/.finished" in world.objects
    assert _record(world)["outcome"]["kind"] == "time-limit"
    assert len(world.active_jobs(RUN)) == 3  # they get their minute to end by themselves
    # When they have not ended a minute later
    world.now += 60
    supervise()
    # Then they are stopped, with the reason
    assert world.active_jobs(RUN) == []
    reasons = {j["statusReason"] for j in world.jobs.values() if j.get("parent")}
    assert reasons and all("trainer-ended" in r and RUN in r for r in reasons)


def test_rollouts_that_end_by_themselves_are_not_stopped(
    world: World, supervise: Supervise
) -> None:
    job = _deployed(world)
    world.end_trainer(RUN, "Completed", "Completed")
    supervise()
    for child in world.jobs[job]["children"]:
        world.set_job(child, "SUCCEEDED")
    world.now += 120
    summary = supervise()
    assert world.count("TerminateJob") == 0
    assert [a["action"] for a in summary["actions"]] == []
    assert world.jobs[job]["status"] == "SUCCEEDED"
    assert _record(world)["outcome"]["kind"] == "completed"


# --------------------------------------------------------------- 2. one failed worker


def test_a_failed_worker_is_restarted_as_the_same_worker(
    world: World, supervise: Supervise
) -> None:
    job = _deployed(world)
    world.set_job(f"{job}:1", "FAILED", "Essential container in task exited", exit_code=137)
    supervise()
    restarts = [j for j in world.jobs.values() if j["jobName"] == f"{RUN}-w1-r1"]
    assert len(restarts) == 1
    env = {e["name"]: e["value"] for e in restarts[0]["container"]["environment"]}
    assert env["ROLLOUT_IDX"] == "1"
    assert env["SAGEMAKER_SHARED_S3_PREFIX"] == f"experiments/demo/runs/{RUN}"
    assert restarts[0]["tags"]["rollouts:run"] == RUN
    assert restarts[0]["tags"]["rollouts:worker"] == "1"
    # The job definition with its revision (Batch checks its tags only then)
    assert restarts[0]["jobDefinition"].endswith("-rollout:1")
    # A second pass submits nothing more (the restart runs)
    supervise()
    assert sum(1 for j in world.jobs.values() if j["jobName"].startswith(f"{RUN}-w")) == 1
    record = _record(world)
    assert record["restarts"] == {"1": 1}
    assert "exit code 137" in record["actions"][-1]["reason"]


def test_a_worker_that_keeps_failing_stops_the_run_naming_it(
    world: World, supervise: Supervise
) -> None:
    job = _deployed(world, maxRestarts=1)
    world.set_job(f"{job}:2", "FAILED", "OutOfMemoryError: Container killed due to memory usage")
    supervise()
    restart = next(j for j in world.jobs.values() if j["jobName"] == f"{RUN}-w2-r1")
    world.set_job(
        restart["jobId"], "FAILED", "OutOfMemoryError: Container killed due to memory usage"
    )
    supervise()
    assert world.active_jobs(RUN) == []
    assert world.trainers[RUN]["TrainingJobStatus"] == "Stopped"
    record = _record(world)
    assert record["outcome"]["kind"] == "stopped-by-supervisor"
    reason = record["outcome"]["reason"]
    assert "worker 2 failed" in reason and "OutOfMemoryError" in reason
    assert restart["container"]["logStreamName"] in reason
    assert "restarts used 1 of 1" in reason


def test_on_failure_stop_stops_at_the_first_failure(world: World, supervise: Supervise) -> None:
    job = _deployed(world, onFailure="stop")
    world.set_job(f"{job}:0", "FAILED", "CannotPullContainerError: pull access denied")
    supervise()
    assert world.trainers[RUN]["TrainingJobStatus"] == "Stopped"
    assert "on_failure: stop" in _record(world)["outcome"]["reason"]


def test_on_failure_ignore_leaves_the_run_alone(world: World, supervise: Supervise) -> None:
    job = _deployed(world, onFailure="ignore")
    world.set_job(f"{job}:0", "FAILED", "Essential container in task exited")
    supervise()
    assert world.writes() == []


def test_workers_stopped_by_the_project_are_not_failures(
    world: World, supervise: Supervise
) -> None:
    job = _deployed(world)
    world.set_job(f"{job}:0", "FAILED", "stopped by the experiment's fan-out custom resource")
    supervise()
    assert world.count("SubmitJob") == 0


# --------------------------------------------------------------- stall and budget


def test_a_run_with_no_new_episode_is_stopped_after_stall_minutes(
    world: World, supervise: Supervise
) -> None:
    _deployed(world, stallMinutes=20)
    world.put(f"experiments/demo/runs/{RUN}/metrics/TrainingMetrics_1.json", at=world.now + 300)
    world.now += 300 + 19 * 60
    supervise()
    assert world.trainers[RUN]["TrainingJobStatus"] == "InProgress"  # 19 min: not yet
    world.now += 60
    supervise()
    assert world.trainers[RUN]["TrainingJobStatus"] == "Stopped"
    assert "no new episode" in _record(world)["outcome"]["reason"]


def test_worker_zero_alone_does_not_count_as_progress(world: World, supervise: Supervise) -> None:
    # Worker 0 runs evaluation episodes while it waits for a checkpoint (deepracer-simapp
    # markov/rollout_worker.py), so its file changes while training is stuck.
    _deployed(world, stallMinutes=10)
    world.now += 11 * 60
    world.put(f"experiments/demo/runs/{RUN}/metrics/TrainingMetrics.json")
    supervise()
    assert world.trainers[RUN]["TrainingJobStatus"] == "Stopped"


def test_a_run_is_stopped_when_its_cost_reaches_its_budget(
    world: World, supervise: Supervise
) -> None:
    # $1/h trainer + 3 rollouts at $0.5/h: $2.50 an hour
    _deployed(world, budgetUsd=5.0, trainerUsdPerHour=1.0, rolloutUsdPerHour=0.5, stallMinutes=0)
    world.now += 2 * 3600 - 60
    supervise()
    assert world.trainers[RUN]["TrainingJobStatus"] == "InProgress"
    world.now += 60
    supervise()
    assert world.trainers[RUN]["TrainingJobStatus"] == "Stopped"
    assert "reached budget_usd $5.00" in _record(world)["outcome"]["reason"]


# --------------------------------------------------------------- 4. ownership


def test_a_stale_waiter_s_run_after_a_rollback_is_stopped_and_the_old_one_kept(
    world: World, supervise: Supervise
) -> None:
    # Given the stack rolled back to RUN while a stale is_complete started OTHER
    _deployed(world)
    world.stack("demo")["StackStatus"] = "UPDATE_ROLLBACK_COMPLETE"
    world.start_trainer(OTHER)
    world.submit_rollouts(OTHER, 3)
    supervise()
    assert world.running_trainers() == [RUN]
    assert world.active_jobs(OTHER) == []
    assert len(world.active_jobs(RUN)) == 3
    assert "runs demo-0a1b2c3d, not demo-9f8e7d6c" in _record(world, OTHER)["outcome"]["reason"]


def test_nothing_is_decided_while_the_stack_is_in_an_operation(
    world: World, supervise: Supervise
) -> None:
    _deployed(world)
    world.stack("demo")["StackStatus"] = "UPDATE_IN_PROGRESS"
    world.start_trainer(OTHER)
    world.submit_rollouts(OTHER, 3)
    supervise()
    assert world.writes() == []


def test_a_deleted_stack_s_run_and_evaluation_are_stopped(
    world: World, supervise: Supervise
) -> None:
    _deployed(world)
    evaluation = world._SubmitJob(
        {
            "jobName": f"{RUN}-e0001",
            "jobQueue": world.queue_of("demo"),
            "jobDefinition": "def",
            "tags": {"rollouts:experiment": "demo"},
        }
    )["jobId"]
    world.stack("demo")["StackStatus"] = "DELETE_COMPLETE"
    supervise()
    assert world.running_trainers() == []
    assert world.active_jobs() == []
    assert world.jobs[evaluation]["status"] == "FAILED"


def test_a_create_that_failed_with_a_made_up_id_leaves_nothing_running(
    world: World, supervise: Supervise
) -> None:
    # aws/aws-cdk#26139: CloudFormation invents the physical id of a resource whose Create failed
    _deployed(world)
    stack = world.stack("demo")
    stack.update(StackStatus="ROLLBACK_COMPLETE", run="DeepRacerRollouts-demo-Run-1X2Y3Z")
    supervise()
    assert world.running_trainers() == []
    assert world.active_jobs() == []


def test_another_platform_s_jobs_and_untagged_jobs_are_never_touched(
    world: World, supervise: Supervise
) -> None:
    world.add_stack("theirs", platform="other", run_id="theirs-11112222")
    world.start_trainer("theirs-11112222")
    world.submit_rollouts("theirs-11112222", 2)
    # The other platform keeps its data in its own bucket
    world.trainers["theirs-11112222"]["OutputDataConfig"]["S3OutputPath"] = "s3://their-bucket/x"
    world.trainers["untagged-33334444"] = {
        **world.trainers["theirs-11112222"],
        "TrainingJobName": "untagged-33334444",
        "Tags": [],
    }
    supervise()
    assert world.writes() == []


def test_every_action_is_notified_once(world: World, supervise: Supervise) -> None:
    _deployed(world)
    world.stack("demo")["StackStatus"] = "DELETE_IN_PROGRESS"
    supervise()
    supervise()
    subjects = [p["Subject"] for p in world.published]
    assert subjects == [
        f"DeepRacer run {RUN} stopped",
        f"DeepRacer run {RUN} ended: stopped-by-supervisor",
    ]
    message = json.loads(world.published[0]["Message"])
    assert message["rule"] == "orphan" and "DELETE_IN_PROGRESS" in message["reason"]


def test_a_corrupt_record_is_named_and_replaced(world: World, supervise: Supervise) -> None:
    _deployed(world)
    world.put(f"experiments/demo/supervisor/{RUN}.json", b"{not json")
    world.end_trainer(RUN, "Completed", "Completed")
    supervise()
    assert _record(world)["outcome"]["kind"] == "completed"


def test_a_sweep_reads_nothing_per_stack_when_nothing_runs(
    world: World, supervise: Supervise
) -> None:
    for i in range(20):
        world.add_stack(f"idle-{i}", run_id=f"idle-{i}-0000000{i % 10}")
    supervise()
    assert world.count("DescribeStackResources", "GetObject", "ListObjectsV2") == 0
    assert world.count("DescribeStacks") == 1


def test_records_are_in_the_platform_bucket(world: World, supervise: Supervise) -> None:
    _deployed(world)
    world.end_trainer(RUN, "Failed", "AlgorithmError", reason="ClientError: out of memory")
    supervise()
    puts = [p for op, p in world.calls if op == "PutObject"]
    assert puts and all(p["Bucket"] == BUCKET for p in puts)
    assert _record(world)["outcome"] == {
        "kind": "failed",
        "reason": f"training job {RUN} failed: ClientError: out of memory",
        "at": _record(world)["outcome"]["at"],
    }


def test_an_event_looks_only_at_the_experiment_it_names(world: World, supervise: Supervise) -> None:
    _deployed(world)
    world.add_stack("other", status="DELETE_COMPLETE")
    world.calls.clear()
    supervise({"source": "aws.batch", "detail": {"jobName": "someone-elses-job"}})
    assert world.calls == []  # not one of ours: nothing read
    supervise(
        {"source": "aws.cloudformation", "detail": {"stack-id": world.stack("demo")["StackId"]}}
    )
    named = [p.get("StackName") for op, p in world.calls if op == "DescribeStacks"]
    assert named == ["DeepRacerRollouts-demo"]


def test_a_pass_killed_after_its_restart_submit_never_submits_the_worker_twice(
    world: World, supervise: Supervise, monkeypatch: Any
) -> None:
    from supervisor import records

    # Given a failed worker, a pass that dies right after SubmitJob (before it records the job),
    # and a ListJobs that shows new jobs only two minutes later
    job = _deployed(world)
    world.set_job(f"{job}:1", "FAILED", "Essential container in task exited", exit_code=1)
    world.list_lag = 120
    real = records.record

    def dies_after_submit(s3: Any, bucket: str, action: Any, now: float, job_id: str = "") -> bool:
        if job_id:
            raise TimeoutError("the Lambda ran out of time")
        return real(s3, bucket, action, now, job_id)

    monkeypatch.setattr(records, "record", dies_after_submit)
    supervise()
    monkeypatch.setattr(records, "record", real)
    assert world.count("SubmitJob") == 1
    # When later passes run while ListJobs still hides the restart, and after
    for _ in range(6):
        world.now += 60
        supervise()
    # Then the worker was restarted exactly once
    assert sum(1 for j in world.jobs.values() if j["jobName"].startswith(f"{RUN}-w1-")) == 1


def test_a_pass_killed_before_its_restart_submit_restarts_after_the_settle_time(
    world: World, supervise: Supervise, monkeypatch: Any
) -> None:
    from supervisor import act

    job = _deployed(world)
    world.set_job(f"{job}:1", "FAILED", "Essential container in task exited", exit_code=1)

    def dies(*_args: Any, **_kwargs: Any) -> str:
        raise TimeoutError("the Lambda ran out of time")

    monkeypatch.setattr(act, "_restart", dies)
    supervise()
    monkeypatch.undo()
    assert world.count("SubmitJob") == 0
    world.now += 60
    supervise()
    assert world.count("SubmitJob") == 0  # settling: the submit might have landed
    world.now += 300
    supervise()
    [restart] = [j for j in world.jobs.values() if j["jobName"].startswith(f"{RUN}-w1-")]
    assert restart["jobName"] == f"{RUN}-w1-r2"  # the lost attempt counts


def test_the_lambda_entry_reads_its_configuration_and_fails_an_event_it_could_not_finish(
    world: World, monkeypatch: Any
) -> None:
    import pytest
    from supervisor import clients, handler

    _deployed(world)
    world.stack("demo")["StackStatus"] = "DELETE_COMPLETE"
    aws = world.clients()
    monkeypatch.setattr(clients, "get_clients", lambda: aws)
    monkeypatch.setattr(handler, "wall_clock", lambda: world.now)
    monkeypatch.setenv(
        "SUPERVISOR_CONFIG", json.dumps({"platform": "default", "bucket": BUCKET, "topicArn": ""})
    )
    summary = handler.on_event(
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    )
    assert [a["action"] for a in summary["actions"]] == ["stop", "outcome"]
    assert world.published == []  # no topic configured: nothing published
    # An action that fails makes the invocation fail, so that Lambda retries the event
    _deployed(world, run=OTHER)
    world.faults.append(Fault("TerminateJob", "ServerException", times=10, status=500))
    world.stack("demo")["run"] = RUN
    with pytest.raises(RuntimeError, match="stop demo-9f8e7d6c"):
        handler.on_event({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
