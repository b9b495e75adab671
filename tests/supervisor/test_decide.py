"""The supervisor's decisions as a pure function: observations in, actions out, no AWS."""

from __future__ import annotations

import dataclasses

import pytest
from supervisor.decide import FINISH_GRACE_SECONDS, TRAINER_MISSING_SECONDS, cost_so_far, decide
from supervisor.model import (
    GOING,
    STABLE,
    JobView,
    Observed,
    Record,
    Rules,
    RunView,
    StackView,
    TrainerView,
    WorkerFailure,
)

NOW = 1_000_000.0
RUN = "demo-0a1b2c3d"


def stack(status: str = "UPDATE_COMPLETE", run_id: str | None = RUN, **rules: object) -> StackView:
    return StackView(
        stack_id="arn:aws:cloudformation:eu-west-1:1:stack/DeepRacerRollouts-demo/x",
        name="DeepRacerRollouts-demo",
        experiment="demo",
        status=status,
        run_id=run_id,
        rules=Rules(**rules),  # type: ignore[arg-type]
    )


def trainer(status: str = "InProgress", secondary: str = "Training", **kw: object) -> TrainerView:
    return TrainerView(
        name=RUN, status=status, secondary_status=secondary, started_at=NOW - 600, **kw
    )  # type: ignore[arg-type]


def rollouts(status: str = "RUNNING", size: int = 3, **kw: object) -> JobView:
    return JobView(
        job_id="job-1",
        kind="rollouts",
        status=status,
        created_at=NOW - 600,
        started_at=NOW - 590,
        size=size,
        **kw,
    )  # type: ignore[arg-type]


def run(**kw: object) -> RunView:
    values: dict[str, object] = {
        "run_id": RUN,
        "experiment": "demo",
        "trainer": trainer(),
        "jobs": (rollouts(),),
        "rollout_count": 3,
        "last_episode_at": NOW - 60,
    }
    values.update(kw)
    return RunView(**values)  # type: ignore[arg-type]


def kinds(actions: list) -> list[tuple[str, str]]:
    return [(a.kind, a.rule) for a in actions]


def test_a_healthy_current_run_is_left_alone() -> None:
    assert decide(Observed(now=NOW, stacks=(stack(),), runs=(run(),))) == []


@pytest.mark.parametrize("status", sorted(GOING))
def test_a_run_whose_stack_is_going_is_stopped_with_its_evaluations(status: str) -> None:
    evaluation = JobView(job_id="job-e", kind="evaluation", status="RUNNABLE", created_at=NOW)
    actions = decide(
        Observed(now=NOW, stacks=(stack(status),), runs=(run(jobs=(rollouts(), evaluation)),))
    )
    stop = actions[0]
    assert (stop.kind, stop.rule) == ("stop", "orphan")
    assert stop.job_ids == ("job-1", "job-e") and stop.trainer == RUN
    assert status in stop.reason
    assert actions[1].outcome == "stopped-by-supervisor"


def test_a_run_with_no_stack_at_all_is_stopped() -> None:
    actions = decide(Observed(now=NOW, stacks=(), runs=(run(),)))
    assert kinds(actions)[0] == ("stop", "orphan") and "no stack" in actions[0].reason


@pytest.mark.parametrize("status", sorted(STABLE))
def test_a_run_that_is_not_its_settled_stack_s_current_one_is_stopped(status: str) -> None:
    evaluation = JobView(job_id="job-e", kind="evaluation", status="RUNNING", created_at=NOW)
    actions = decide(
        Observed(
            now=NOW,
            stacks=(stack(status, run_id="demo-ffffffff"),),
            runs=(run(jobs=(rollouts(), evaluation)),),
        )
    )
    assert actions[0].kind == "stop" and actions[0].job_ids == ("job-1",)  # evaluations kept
    assert "runs demo-ffffffff, not demo-0a1b2c3d" in actions[0].reason


@pytest.mark.parametrize(
    "status",
    [
        "CREATE_IN_PROGRESS",
        "UPDATE_IN_PROGRESS",
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "ROLLBACK_IN_PROGRESS",
        "REVIEW_IN_PROGRESS",
    ],
)
def test_nothing_is_decided_during_a_stack_operation(status: str) -> None:
    assert (
        decide(Observed(now=NOW, stacks=(stack(status, run_id="demo-ffffffff"),), runs=(run(),)))
        == []
    )


def test_a_deleted_stack_that_still_lists_does_not_hide_the_live_one() -> None:
    gone = dataclasses.replace(stack("DELETE_COMPLETE", run_id="demo-ffffffff"), stack_id="old")
    assert decide(Observed(now=NOW, stacks=(gone, stack()), runs=(run(),))) == []


def test_the_scope_limits_what_is_judged() -> None:
    observed = Observed(now=NOW, stacks=(), runs=(run(),), scope=frozenset({"other"}))
    assert decide(observed) == []


# ----------------------------------------------------------------- trainer ended


@pytest.mark.parametrize(
    ("status", "secondary", "reason", "outcome"),
    [
        ("Completed", "Completed", "", "completed"),
        ("Stopped", "MaxRuntimeExceeded", "", "time-limit"),
        ("Stopped", "Stopped", "", "stopped-by-user"),
        ("Failed", "Failed", "AlgorithmError: boom", "failed"),
    ],
)
def test_a_trainer_end_records_the_outcome_and_finishes_the_rollouts(
    status: str, secondary: str, reason: str, outcome: str
) -> None:
    ended = trainer(status, secondary, ended_at=NOW - 10, failure_reason=reason)
    actions = decide(Observed(now=NOW, stacks=(stack(),), runs=(run(trainer=ended),)))
    assert kinds(actions) == [("outcome", "outcome"), ("finish", "trainer-ended")]
    assert actions[0].outcome == outcome
    if reason:
        assert reason in actions[0].reason


def test_rollouts_still_running_after_the_grace_are_stopped_exactly_at_it() -> None:
    def at(seconds: float) -> list:
        ended = trainer("Completed", "Completed", ended_at=NOW - seconds)
        return decide(
            Observed(
                now=NOW,
                stacks=(stack(),),
                runs=(run(trainer=ended, finished_mark=True, record=Record(outcome="completed")),),
            )
        )

    assert at(FINISH_GRACE_SECONDS - 1) == []
    stopped = at(FINISH_GRACE_SECONDS)
    assert kinds(stopped) == [("stop", "trainer-ended")] and stopped[0].trainer is None


def test_a_supervisor_stop_is_the_outcome_when_the_trainer_ends_stopped() -> None:
    ended = trainer("Stopped", "Stopped", ended_at=NOW)
    actions = decide(
        Observed(
            now=NOW,
            stacks=(stack(),),
            runs=(run(trainer=ended, jobs=(), record=Record(stopped_by="stall")),),
        )
    )
    assert actions[0].outcome == "stopped-by-supervisor" and "stall" in actions[0].reason


def test_an_ended_run_with_its_outcome_recorded_needs_nothing() -> None:
    ended = trainer("Completed", "Completed", ended_at=NOW - 999)
    assert (
        decide(
            Observed(
                now=NOW,
                stacks=(stack(),),
                runs=(run(trainer=ended, jobs=(), record=Record(outcome="completed")),),
            )
        )
        == []
    )


def test_rollouts_without_any_trainer_are_stopped_after_a_while() -> None:
    young = dataclasses.replace(rollouts(), created_at=NOW - TRAINER_MISSING_SECONDS + 1)
    assert (
        decide(Observed(now=NOW, stacks=(stack(),), runs=(run(trainer=None, jobs=(young,)),))) == []
    )
    old = dataclasses.replace(young, created_at=NOW - TRAINER_MISSING_SECONDS)
    actions = decide(Observed(now=NOW, stacks=(stack(),), runs=(run(trainer=None, jobs=(old,)),)))
    assert kinds(actions) == [("stop", "trainer-missing"), ("outcome", "outcome")]
    assert actions[1].outcome == "stopped-by-supervisor"


# ----------------------------------------------------------------- failures


FAILED_1 = WorkerFailure(worker=1, job_id="job-1:1", reason="OutOfMemoryError", log_stream="s/1")


def test_a_failed_worker_is_restarted_up_to_max_restarts_then_the_run_stops() -> None:
    def with_used(used: int) -> list:
        record = Record(restarts=((1, used),))
        return decide(
            Observed(
                now=NOW,
                stacks=(stack(max_restarts=2),),
                runs=(run(failures=(FAILED_1,), record=record),),
            )
        )

    first = with_used(0)
    assert kinds(first) == [("restart", "on-failure")]
    assert (first[0].worker, first[0].attempt, first[0].job_ids) == (1, 1, ("job-1:1",))
    assert with_used(1)[0].attempt == 2
    stopped = with_used(2)
    assert kinds(stopped)[0] == ("stop", "on-failure")
    assert (
        stopped[0].reason
        == "worker 1 failed: OutOfMemoryError (log stream s/1); restarts used 2 of 2"
    )


def test_a_worker_whose_restart_runs_is_not_restarted_again() -> None:
    restart = JobView(job_id="job-r", kind="restart", status="RUNNING", created_at=NOW, worker=1)
    assert (
        decide(
            Observed(
                now=NOW,
                stacks=(stack(),),
                runs=(run(jobs=(rollouts(), restart), failures=(FAILED_1,)),),
            )
        )
        == []
    )


def test_failures_are_not_acted_on_while_the_trainer_is_stopping() -> None:
    stopping = trainer("Stopping", "Stopping")
    assert (
        decide(
            Observed(
                now=NOW, stacks=(stack(),), runs=(run(trainer=stopping, failures=(FAILED_1,)),)
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("on_failure", "expected"),
    [("stop", [("stop", "on-failure"), ("outcome", "outcome")]), ("ignore", [])],
)
def test_on_failure_stop_and_ignore(on_failure: str, expected: list) -> None:
    actions = decide(
        Observed(now=NOW, stacks=(stack(on_failure=on_failure),), runs=(run(failures=(FAILED_1,)),))
    )
    assert kinds(actions) == expected


# ----------------------------------------------------------------- stall and budget


def test_stall_fires_exactly_at_stall_minutes_and_only_while_training() -> None:
    def at(quiet_seconds: float, secondary: str = "Training", minutes: int = 10) -> list:
        r = run(
            trainer=trainer(secondary=secondary),
            last_episode_at=NOW - quiet_seconds,
            jobs=(dataclasses.replace(rollouts(), started_at=NOW - 9999, created_at=NOW - 9999),),
        )
        r = dataclasses.replace(r, trainer=dataclasses.replace(r.trainer, started_at=NOW - 9999))  # type: ignore[arg-type]
        return decide(Observed(now=NOW, stacks=(stack(stall_minutes=minutes),), runs=(r,)))

    assert at(599) == []
    assert kinds(at(600))[0] == ("stop", "stall")
    assert at(600, secondary="Downloading") == []
    assert at(99999, minutes=0) == []


def test_a_restarted_worker_s_start_counts_as_progress() -> None:
    restart = JobView(
        job_id="job-r",
        kind="restart",
        status="RUNNING",
        created_at=NOW - 60,
        started_at=NOW - 30,
        worker=2,
    )
    r = run(last_episode_at=NOW - 9999, jobs=(rollouts(), restart))
    assert decide(Observed(now=NOW, stacks=(stack(stall_minutes=10),), runs=(r,))) == []


def test_budget_fires_when_the_cost_so_far_reaches_it() -> None:
    rules = {
        "budget_usd": 1.0,
        "trainer_usd_per_hour": 1.0,
        "rollout_usd_per_hour": 0.5,
        "stall_minutes": 0,
    }
    # trainer 600 s at $1/h + 3 rollouts 590 s at $0.5/h
    spent = 600 / 3600 + 3 * 590 / 3600 * 0.5
    assert cost_so_far(run(), stack(**rules), NOW) == pytest.approx(spent)
    assert (
        decide(
            Observed(
                now=NOW, stacks=(stack(**{**rules, "budget_usd": spent + 0.001}),), runs=(run(),)
            )
        )
        == []
    )
    actions = decide(
        Observed(
            now=NOW,
            stacks=(stack(**{**rules, "budget_usd": round(spent, 6) - 1e-6}),),
            runs=(run(),),
        )
    )
    assert kinds(actions)[0] == ("stop", "budget")


def test_decisions_are_the_same_whatever_order_the_observation_lists_things_in() -> None:
    other = dataclasses.replace(run(), run_id="demo-ffffffff")
    forward = decide(Observed(now=NOW, stacks=(stack(),), runs=(run(), other)))
    backward = decide(Observed(now=NOW, stacks=(stack(),), runs=(other, run())))
    assert forward == backward and len(forward) == 2
