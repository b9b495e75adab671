"""The run supervisor's decisions: ``decide(observed) -> actions``, a pure function.

Level-triggered: it looks only at what is there now (stacks, jobs, records), never at the event
that woke it, so the same observation always gives the same actions, and running it again after
they were applied gives nothing new (or the same stops, which are harmless to repeat).

Rules, per run that has something running (README.md, "The run supervisor"):

1. **Ownership.** What should run is what CloudFormation says exists: the experiment's stack (by
   stack id) and its run resource's physical id. A run of an experiment whose stack is gone or
   being deleted is stopped (evaluations too); a run that is not its stack's current one is
   stopped (evaluations of earlier runs are left alone: a user may have started them). While the
   stack is in an operation, the fan-out owns the run: nothing is decided until it settles.
2. **Trainer ended** (Completed, Stopped, Failed): the outcome is recorded, ``model/.finished``
   is written so that the simapp ends its rollouts itself (they end SUCCEEDED), and rollouts still
   running ``FINISH_GRACE_SECONDS`` after the trainer's end are stopped.
3. **A worker failed** after Batch's retries: ``on_failure`` ``restart`` submits that worker's
   index again (at most ``max_restarts`` times), ``stop`` stops the run, ``ignore`` leaves it.
4. **Stall**: no new episode in any worker's metrics for ``stall_minutes`` while the trainer
   trains: the run is stopped.
5. **Budget**: the cost so far reaches ``budget_usd``: the run is stopped.
"""

from __future__ import annotations

from .model import (
    GOING,
    STABLE,
    Action,
    Observed,
    RunView,
    StackView,
)

# How long rollouts may go on after their trainer ended before they are stopped: the simapp's
# rollouts check model/.finished between episodes (markov/rollout_worker.py, exit_if_trainer_done).
FINISH_GRACE_SECONDS = 60.0
# A worker restarted this recently is not restarted again unless its restart is known to have
# failed: a restart submitted by a pass that died before it recorded the job may not show in
# ListJobs yet (Batch has no idempotency token).
RESTART_SETTLE_SECONDS = 300.0
# Rollouts that have run this long without any trainer of their run are stopped.
TRAINER_MISSING_SECONDS = 600.0
# Reasons are kept short: they land in records, notifications and `rollouts status`.
MAX_REASON = 400


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def decide(observed: Observed) -> list[Action]:
    """Every action the observation calls for, in a stable order (by run id)."""
    stacks: dict[str, StackView] = {}
    for stack in sorted(observed.stacks, key=lambda s: (s.experiment, s.stack_id)):
        # Stack names are unique per region, so one live stack per experiment; a deleted one
        # that still lists (DELETE_COMPLETE) never wins over a live one.
        if stack.experiment not in stacks or stacks[stack.experiment].status in GOING:
            stacks[stack.experiment] = stack
    actions: list[Action] = []
    for run in sorted(observed.runs, key=lambda r: r.run_id):
        if observed.scope is not None and run.experiment not in observed.scope:
            continue
        actions.extend(_decide_run(run, stacks.get(run.experiment), observed.now))
    return actions


def _decide_run(run: RunView, stack: StackView | None, now: float) -> list[Action]:
    if stack is None or stack.status in GOING:
        where = "no stack" if stack is None else f"stack {stack.name} is {stack.status}"
        return _stop(
            run,
            "orphan",
            f"no live stack accounts for run {run.run_id} ({where})",
            evaluations=True,
        )
    if stack.status not in STABLE:
        return []  # an operation is under way: the fan-out's turn
    if stack.run_id != run.run_id:
        current = stack.run_id or "no run"
        return _stop(
            run,
            "orphan",
            f"stack {stack.name} ({stack.status}) runs {current}, not {run.run_id}",
            evaluations=False,
        )
    return _owned(run, stack, now)


def _stop(run: RunView, rule: str, reason: str, *, evaluations: bool) -> list[Action]:
    """Stop what of ``run`` is running (and record the outcome if none is recorded yet)."""
    jobs = run.active_jobs if evaluations else run.active_rollouts
    # A trainer already Stopping needs no second stop (StopTrainingJob would refuse it).
    trainer = run.trainer.name if run.trainer and run.trainer.status == "InProgress" else None
    if not jobs and trainer is None:
        return _ended(run)
    reason = _clip(reason)
    actions = [
        Action(
            kind="stop",
            run_id=run.run_id,
            experiment=run.experiment,
            rule=rule,  # type: ignore[arg-type]
            reason=reason,
            job_ids=tuple(sorted(j.job_id for j in jobs)),
            trainer=trainer,
        )
    ]
    if run.record.outcome is None:
        ended = trainer_outcome(run)
        if trainer is not None or ended is None:
            actions.append(_outcome(run, "stopped-by-supervisor", f"{rule}: {reason}"))
        else:
            actions.append(_outcome(run, *ended))
    return actions


def _outcome(run: RunView, outcome: str, reason: str) -> Action:
    return Action(
        kind="outcome",
        run_id=run.run_id,
        experiment=run.experiment,
        rule="outcome",
        reason=_clip(reason),
        outcome=outcome,
    )


def trainer_outcome(run: RunView) -> tuple[str, str] | None:
    """How the run ended, from its trainer's final state (None: it has not ended)."""
    trainer = run.trainer
    if trainer is None or run.trainer_active:
        return None
    detail = trainer.failure_reason or trainer.secondary_status or trainer.status
    if trainer.status == "Completed":
        return "completed", f"training job {trainer.name} completed"
    if trainer.status == "Failed":
        return "failed", f"training job {trainer.name} failed: {detail}"
    if trainer.secondary_status == "MaxRuntimeExceeded":
        return "time-limit", f"training job {trainer.name} reached its time limit"
    if run.record.stopped_by:
        return "stopped-by-supervisor", f"stopped by the supervisor ({run.record.stopped_by})"
    return "stopped-by-user", (
        f"training job {trainer.name} was stopped ({detail}): `rollouts stop`, the console, "
        "or a stack update or delete"
    )


def _ended(run: RunView) -> list[Action]:
    ended = trainer_outcome(run)
    if ended is None or run.record.outcome is not None:
        return []
    return [_outcome(run, *ended)]


def _owned(run: RunView, stack: StackView, now: float) -> list[Action]:
    trainer = run.trainer
    if trainer is None:
        oldest = min((j.created_at for j in run.active_rollouts), default=now)
        if run.active_rollouts and now - oldest >= TRAINER_MISSING_SECONDS:
            return _stop(
                run,
                "trainer-missing",
                f"rollouts of {run.run_id} have run {int((now - oldest) / 60)} min without "
                "a training job",
                evaluations=False,
            )
        return []
    if not run.trainer_active:
        return _after_trainer(run, now)
    if trainer.status != "InProgress":
        return []  # Stopping: whatever stopped it goes on; the end is decided when it ends
    return _training(run, stack, now)


def _after_trainer(run: RunView, now: float) -> list[Action]:
    trainer = run.trainer
    assert trainer is not None
    actions = _ended(run)
    if not run.active_rollouts:
        return actions
    if not run.finished_mark:
        actions.append(
            Action(
                kind="finish",
                run_id=run.run_id,
                experiment=run.experiment,
                rule="trainer-ended",
                reason=f"training job {trainer.name} is {trainer.status}: the rollouts are "
                "told to finish (model/.finished)",
            )
        )
    ended = trainer.ended_at if trainer.ended_at is not None else now
    if now - ended >= FINISH_GRACE_SECONDS:
        actions.extend(
            a
            for a in _stop(
                run,
                "trainer-ended",
                f"training job {trainer.name} is {trainer.status}; its rollouts still ran "
                f"{int(now - ended)} s later",
                evaluations=False,
            )
            if a.kind == "stop"
        )
    return actions


def _training(run: RunView, stack: StackView, now: float) -> list[Action]:
    rules = stack.rules
    trainer = run.trainer
    assert trainer is not None
    busy = {j.worker for j in run.active_rollouts if j.worker is not None}
    restarts: list[Action] = []
    for failure in sorted(run.failures, key=lambda f: f.worker):
        if failure.worker in busy or rules.on_failure == "ignore":
            continue
        restarted = run.record.restarted_at_of(failure.worker)
        settling = restarted is not None and now - restarted < RESTART_SETTLE_SECONDS
        if settling and failure.job_id != run.record.restart_jobs.get(failure.worker):
            continue
        used = run.record.restarts_of(failure.worker)
        where = f" (log stream {failure.log_stream})" if failure.log_stream else ""
        what = f"worker {failure.worker} failed: {failure.reason}{where}"
        if rules.on_failure == "restart" and used < rules.max_restarts:
            restarts.append(
                Action(
                    kind="restart",
                    run_id=run.run_id,
                    experiment=run.experiment,
                    rule="on-failure",
                    reason=_clip(f"{what}; restart {used + 1} of {rules.max_restarts}"),
                    job_ids=(failure.job_id,),  # the failed job: its settings are reused
                    worker=failure.worker,
                    attempt=used + 1,
                )
            )
            continue
        limit = (
            f"; restarts used {used} of {rules.max_restarts}"
            if rules.on_failure == "restart"
            else " (on_failure: stop)"
        )
        return _stop(run, "on-failure", what + limit, evaluations=False)
    if restarts:
        return restarts
    if rules.stall_minutes > 0 and trainer.secondary_status == "Training":
        since = max(
            [
                t
                for t in (
                    run.last_episode_at,
                    trainer.started_at,
                    *(j.started_at or j.created_at for j in run.rollout_jobs),
                )
                if t is not None
            ],
            default=now,
        )
        if now - since >= rules.stall_minutes * 60:
            return _stop(
                run,
                "stall",
                f"no new episode in any worker's metrics for {int((now - since) / 60)} min "
                f"(stall_minutes: {rules.stall_minutes})",
                evaluations=False,
            )
    if rules.budget_usd is not None:
        spent = cost_so_far(run, stack, now)
        if spent >= rules.budget_usd:
            return _stop(
                run,
                "budget",
                f"cost so far ${spent:.2f} reached budget_usd ${rules.budget_usd:.2f}",
                evaluations=False,
            )
    return []


def cost_so_far(run: RunView, stack: StackView, now: float) -> float:
    """Elapsed trainer instance-hours and rollout task-hours at the experiment's on-demand rates
    (an upper bound on Spot): every rollout job is counted from its start to now, each array job
    as its number of children."""
    rules = stack.rules
    trainer = run.trainer
    total = 0.0
    if trainer is not None and trainer.started_at is not None:
        end = trainer.ended_at if trainer.ended_at is not None else now
        hours = max(0.0, end - trainer.started_at) / 3600
        total += hours * trainer.instance_count * rules.trainer_usd_per_hour
    for job in run.rollout_jobs:
        # An array parent may carry no start time of its own: count it from its creation once
        # it runs (an upper bound: queue time is not billed).
        since = job.started_at
        if since is None and job.status in ("STARTING", "RUNNING"):
            since = job.created_at
        if since is not None:
            hours = max(0.0, now - since) / 3600
            total += hours * job.size * rules.rollout_usd_per_hour
    return total
