"""What the run supervisor sees and what it may do: plain frozen values, no I/O.

``observe`` builds an :class:`Observed` from AWS; ``decide`` turns it into :class:`Action` s;
``act`` applies them. Times are seconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# CloudFormation stack states in which the stack's run resource is settled: the physical id it
# reports is what should run. In any other state an operation is under way and the fan-out owns
# the run until it ends (the supervisor waits; the next event or sweep decides).
STABLE = frozenset(
    {
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "ROLLBACK_COMPLETE",
        "IMPORT_COMPLETE",
        "IMPORT_ROLLBACK_COMPLETE",
        "UPDATE_FAILED",
        "UPDATE_ROLLBACK_FAILED",
        "CREATE_FAILED",
        "ROLLBACK_FAILED",
    }
)
# A stack in these states accounts for nothing: it is going or gone.
GOING = frozenset({"DELETE_IN_PROGRESS", "DELETE_COMPLETE", "DELETE_FAILED"})

TRAINER_ACTIVE = frozenset({"InProgress", "Stopping"})
BATCH_ACTIVE = frozenset({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"})

OnFailure = Literal["restart", "stop", "ignore"]
JobKind = Literal["rollouts", "restart", "evaluation"]


@dataclass(frozen=True)
class Rules:
    """An experiment's supervision rules (its stack's ``Supervision`` output)."""

    on_failure: OnFailure = "restart"
    max_restarts: int = 3
    stall_minutes: int = 30  # 0: off
    budget_usd: float | None = None  # None: off
    trainer_usd_per_hour: float = 0.0
    rollout_usd_per_hour: float = 0.0  # one rollout task, on demand


@dataclass(frozen=True)
class StackView:
    """One experiment stack as CloudFormation reports it."""

    stack_id: str
    name: str
    experiment: str
    status: str
    run_id: str | None  # the run resource's physical id; None: unknown or none
    rules: Rules = field(default_factory=Rules)


@dataclass(frozen=True)
class TrainerView:
    name: str
    status: str  # InProgress | Completed | Failed | Stopping | Stopped
    secondary_status: str = ""
    failure_reason: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    instance_count: int = 1


@dataclass(frozen=True)
class JobView:
    """One Batch job of a run (an array parent stands for its children)."""

    job_id: str
    kind: JobKind
    status: str
    created_at: float
    started_at: float | None = None
    worker: int | None = None  # restart jobs: the worker they stand for
    size: int = 1  # children of an array job

    @property
    def active(self) -> bool:
        return self.status in BATCH_ACTIVE


@dataclass(frozen=True)
class WorkerFailure:
    """A rollout worker whose last job ended FAILED after Batch's own retries."""

    worker: int
    job_id: str
    reason: str
    log_stream: str = ""


@dataclass(frozen=True)
class Record:
    """What the supervisor wrote about a run (``<prefix>/supervisor/<run id>.json``)."""

    done: frozenset[str] = frozenset()  # keys of actions already applied (idempotence)
    restarts: tuple[tuple[int, int], ...] = ()  # (worker, restarts used)
    restart_job_ids: tuple[tuple[int, str], ...] = ()  # (worker, job id of its latest restart)
    restarted_at: tuple[tuple[int, float], ...] = ()  # (worker, when its latest restart began)
    outcome: str | None = None
    stopped_by: str | None = None  # the rule that stopped the run, if the supervisor did
    corrupt: str | None = None  # why the record could not be read, when it could not

    def restarts_of(self, worker: int) -> int:
        return dict(self.restarts).get(worker, 0)

    @property
    def restart_jobs(self) -> dict[int, str]:
        return dict(self.restart_job_ids)

    def restarted_at_of(self, worker: int) -> float | None:
        return dict(self.restarted_at).get(worker)


@dataclass(frozen=True)
class RunView:
    run_id: str
    experiment: str
    trainer: TrainerView | None
    jobs: tuple[JobView, ...] = ()
    failures: tuple[WorkerFailure, ...] = ()
    record: Record = field(default_factory=Record)
    rollout_count: int = 0
    last_episode_at: float | None = None  # newest metrics object of any worker
    finished_mark: bool = False  # model/.finished exists

    @property
    def rollout_jobs(self) -> tuple[JobView, ...]:
        return tuple(j for j in self.jobs if j.kind != "evaluation")

    @property
    def active_rollouts(self) -> tuple[JobView, ...]:
        return tuple(j for j in self.rollout_jobs if j.active)

    @property
    def active_jobs(self) -> tuple[JobView, ...]:
        return tuple(j for j in self.jobs if j.active)

    @property
    def trainer_active(self) -> bool:
        return self.trainer is not None and self.trainer.status in TRAINER_ACTIVE


@dataclass(frozen=True)
class Observed:
    """Everything one decision looks at. ``scope`` names the experiments observed (None: all):
    a run of an experiment outside it is never judged."""

    now: float
    stacks: tuple[StackView, ...]
    runs: tuple[RunView, ...]
    scope: frozenset[str] | None = None


Rule = Literal[
    "orphan",
    "trainer-ended",
    "trainer-missing",
    "on-failure",
    "stall",
    "budget",
    "outcome",
]


@dataclass(frozen=True)
class Action:
    """One thing to do, with the reason ``rollouts status`` and the notification show.

    kinds:
    - ``stop``: stop the trainer (``trainer``) and the Batch jobs ``job_ids`` of the run;
    - ``finish``: write ``model/.finished`` so the simapp ends its rollouts itself (SUCCEEDED);
    - ``restart``: submit worker ``worker`` again (its ``attempt``-th restart);
    - ``outcome``: record how the run ended.
    """

    kind: Literal["stop", "finish", "restart", "outcome"]
    run_id: str
    experiment: str
    rule: Rule
    reason: str
    job_ids: tuple[str, ...] = ()
    trainer: str | None = None
    worker: int | None = None
    attempt: int = 0
    outcome: str | None = None

    @property
    def key(self) -> str:
        """Identifies the action for idempotence: applied once, recorded, notified once."""
        if self.kind == "restart":
            return f"restart:{self.worker}:{self.attempt}"
        if self.kind == "outcome":
            return "outcome"
        if self.kind == "finish":
            return "finish"
        return f"stop:{self.rule}"
