"""Property: whatever CloudFormation and the fan-out did (deploys, updates that replace a run,
cancelled updates whose stale waiter starts a run after the rollback, failed creates with a
made-up physical id, deletes whose stop was lost, killed Lambdas, workers that fail, trainers that
reach their time limit, events lost or handled late), one sweep with no new events leaves:

- nothing running that a live stack does not account for;
- at most one run per experiment;
- every healthy current run untouched (by that sweep and by every pass before it);
- a reason on every stop.

Passes also run while the account misbehaves: a read throttled past botocore's retries (the
pass fails and changes nothing), ListJobs that lags behind SubmitJob, events delivered twice.

The fan-out is modelled by what it leaves behind (jobs of runs started, stops that were lost);
its protocol is tested on its own fake cloud in tests/fanout/.
"""

from __future__ import annotations

import itertools
from typing import Any

from botocore.exceptions import ClientError
from hypothesis import example, given
from hypothesis import strategies as st
from supervisor import handler, observe
from supervisor.decide import FINISH_GRACE_SECONDS
from supervisor_world import ACTIVE, BUCKET, PLATFORM, TOPIC, World

EXPERIMENTS = ("alpha", "beta")
SETTINGS = observe.Settings(platform=PLATFORM, bucket=BUCKET, topic_arn=TOPIC)
OPS = (
    "deploy",
    "update",
    "update_lost_stop",
    "cancelled_update_stale_waiter",
    "failed_create",
    "delete",
    "delete_lost_stop",
    "begin_update",
    "trainer_time_limit",
    "worker_fails",
    "time_passes",
    "event",
    "event",
    "event_twice",
    "throttled_pass",
    "listing_lags",
)
READS = (
    "ListJobs",
    "DescribeJobQueues",
    "Search",
    "DescribeStacks",
    "DescribeStackResources",
    "GetObject",
)

_WORLD = World()
_CLIENTS = _WORLD.clients()
_ids = itertools.count()


def _new_run(experiment: str) -> str:
    return f"{experiment}-{next(_ids) % 2**32:08x}"


def _start(world: World, run_id: str) -> None:
    world.start_trainer(run_id)
    world.submit_rollouts(run_id, 2)
    world.run_all()


def _stop_run(world: World, run_id: str) -> None:
    if run_id in world.trainers and world.trainers[run_id]["TrainingJobStatus"] == "InProgress":
        world.end_trainer(run_id, "Stopped", "Stopped")
    for job in world.jobs.values():
        if job["jobName"].startswith(run_id) and job["status"] in ACTIVE:
            world._TerminateJob(
                {
                    "jobId": job["jobId"],
                    "reason": "stopped by the experiment's fan-out custom resource",
                }
            )


def _live(world: World, experiment: str) -> dict[str, Any] | None:
    for s in world.stacks.values():
        if (
            s["StackName"] == f"DeepRacerRollouts-{experiment}"
            and s["StackStatus"] != "DELETE_COMPLETE"
        ):
            return s
    return None


def _apply(world: World, op: str, experiment: str) -> None:
    stack = _live(world, experiment)
    if op == "deploy" and stack is None:
        run_id = _new_run(experiment)
        world.add_stack(experiment, run_id=run_id, supervision={"stallMinutes": 0})
        _start(world, run_id)
    elif op == "failed_create" and stack is None:
        run_id = _new_run(experiment)
        world.add_stack(
            experiment, status="ROLLBACK_COMPLETE", run_id=f"DeepRacerRollouts-{experiment}-Run-X1"
        )
        _start(world, run_id)  # the create's is_complete started it, its stop was lost
    elif stack is None:
        return
    elif op in ("update", "update_lost_stop") and stack["StackStatus"] != "UPDATE_IN_PROGRESS":
        old, new = stack["run"], _new_run(experiment)
        _start(world, new)
        if op == "update" and old:
            _stop_run(world, old)
        stack.update(StackStatus="UPDATE_COMPLETE", run=new)
    elif op == "cancelled_update_stale_waiter" and stack["StackStatus"] != "UPDATE_IN_PROGRESS":
        stack["StackStatus"] = "UPDATE_ROLLBACK_COMPLETE"  # the old run stays current
        _start(world, _new_run(experiment))  # a stale is_complete starts after the rollback
    elif op == "begin_update" and stack["StackStatus"] != "UPDATE_IN_PROGRESS":
        stack["StackStatus"] = "UPDATE_IN_PROGRESS"
        stack["pending"] = _new_run(experiment)
        _start(world, stack["pending"])
    elif op in ("delete", "delete_lost_stop"):
        if op == "delete" and stack["run"]:
            _stop_run(world, stack["run"])
        stack["StackStatus"] = "DELETE_COMPLETE"
    elif op == "trainer_time_limit" and stack["run"] in world.trainers:
        if world.trainers[stack["run"]]["TrainingJobStatus"] == "InProgress":
            world.end_trainer(stack["run"], "Stopped", "MaxRuntimeExceeded")
    elif op == "worker_fails" and stack["run"]:
        for job in world.jobs.values():
            if job["jobName"] == stack["run"] and job.get("parent") and job["status"] == "RUNNING":
                world.set_job(
                    job["jobId"], "FAILED", "Essential container in task exited", exit_code=1
                )
                break
    elif op == "time_passes":
        world.now += 45
    elif op == "event":
        _pass(
            world,
            {"source": "aws.sagemaker", "detail": {"TrainingJobName": f"{experiment}-00000000"}},
        )


def _healthy_current_runs(world: World) -> set[str]:
    """Current runs of settled stacks whose trainer trains and whose workers all run."""
    healthy = set()
    for s in world.stacks.values():
        run_id = s.get("run")
        if (
            s["StackStatus"] in ("DELETE_COMPLETE", "UPDATE_IN_PROGRESS")
            or run_id not in world.trainers
        ):
            continue
        if world.trainers[run_id]["TrainingJobStatus"] != "InProgress":
            continue
        workers = [j for j in world.jobs.values() if j["jobName"] == run_id and j.get("parent")]
        if workers and all(j["status"] == "RUNNING" for j in workers):
            healthy.add(run_id)
    return healthy


def _pass(world: World, event: dict[str, Any]) -> None:
    healthy = _healthy_current_runs(world)
    try:
        handler.run(event, _CLIENTS, SETTINGS, world.now)
    except ClientError:
        assert world.faults, "only an injected fault may fail a pass"
    for run_id in healthy:
        assert world.trainers[run_id]["TrainingJobStatus"] == "InProgress", run_id
        assert all(
            j["status"] == "RUNNING"
            for j in world.jobs.values()
            if j["jobName"] == run_id and j.get("parent")
        ), run_id


def _settle(world: World) -> None:
    """Every stack operation under way ends (its new run becomes current); time passes."""
    for s in world.stacks.values():
        if s["StackStatus"] == "UPDATE_IN_PROGRESS":
            s.update(StackStatus="UPDATE_COMPLETE", run=s.pop("pending"))
    world.now += FINISH_GRACE_SECONDS + 5


# Each of the classes once, whatever the suite profile draws.
@example([("deploy", "alpha"), ("trainer_time_limit", "alpha")])
@example([("deploy", "alpha"), ("cancelled_update_stale_waiter", "alpha")])
@example([("deploy", "alpha"), ("update_lost_stop", "alpha"), ("event", "alpha")])
@example([("deploy", "alpha"), ("delete_lost_stop", "alpha")])
@example([("failed_create", "alpha"), ("deploy", "beta"), ("worker_fails", "beta")])
@example([("deploy", "alpha"), ("begin_update", "alpha"), ("throttled_pass", "alpha")])
@given(
    st.lists(st.tuples(st.sampled_from(OPS), st.sampled_from(EXPERIMENTS)), min_size=1, max_size=14)
)
def test_one_sweep_converges_whatever_happened_before(steps: list[tuple[str, str]]) -> None:
    world = _WORLD
    world.__init__()  # type: ignore[misc]  # a fresh account, the same clients
    for op, experiment in steps:
        _apply(world, op, experiment)
    _settle(world)
    _pass(world, {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})

    # Nothing runs that a live stack does not account for, at most one run per experiment.
    for experiment in EXPERIMENTS:
        stack = _live(world, experiment)
        current = stack["run"] if stack else None
        running = {
            n
            for n, t in world.trainers.items()
            if n.startswith(f"{experiment}-") and t["TrainingJobStatus"] == "InProgress"
        }
        running |= {
            j["jobName"][: len(experiment) + 9]
            for j in world.jobs.values()
            if j["jobName"].startswith(f"{experiment}-") and j["status"] in ACTIVE
        }
        assert running <= ({current} if current else set()), (experiment, running, current)
        assert len(running) <= 1
    # A run whose trainer ended has no rollout left.
    for name, trainer in world.trainers.items():
        if trainer["TrainingJobStatus"] != "InProgress":
            assert not [
                j
                for j in world.jobs.values()
                if j["jobName"].startswith(name) and j["status"] in ACTIVE
            ], name
    # Every stop the supervisor made says why, and the run's record says how it ended.
    for job in world.jobs.values():
        if job["status"] == "FAILED" and job.get("statusReason", "").startswith(
            "rollouts supervisor"
        ):
            assert len(job["statusReason"]) > len("rollouts supervisor: orphan: ")
    for name, trainer in world.trainers.items():
        if trainer["TrainingJobStatus"] != "InProgress":
            key = f"experiments/{name.rsplit('-', 1)[0]}/supervisor/{name}.json"
            assert key in world.objects, name
            assert b'"outcome"' in world.objects[key][0]
