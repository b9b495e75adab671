"""What a run costs before it is deployed, from the dated price table in ``data/prices.json``.

A run is billed while it runs: the trainer's instance-hours (SageMaker training), each rollout's
Fargate task (vCPUs and memory asked, plus ephemeral storage beyond Fargate's free 20 GB), the
video streams' ingestion and, when the experiment declares one, its automatic evaluation. The
worst case is the whole ``trainer.max_run_minutes`` on demand; the estimate uses Fargate Spot when
the platform does. ``budget_usd`` refuses a file whose worst case is above it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from rollouts.problems import Problem
from rollouts.run_properties import ROLLOUT_MARGIN_SECONDS

if TYPE_CHECKING:  # the spec imports this module for its budget check
    from rollouts.spec import ExperimentSpec

# The rollouts' ephemeral storage (constructs_lib/rollout_compute.py, EPHEMERAL_STORAGE_GIB).
ROLLOUT_STORAGE_GB = 60


@cache
def prices() -> dict[str, Any]:
    text = resources.files("rollouts").joinpath("data/prices.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


@dataclass(frozen=True)
class CostLine:
    item: str
    quantity: float
    unit: str
    on_demand_usd: float | None
    estimate_usd: float | None


@dataclass(frozen=True)
class RunCost:
    lines: tuple[CostLine, ...]
    worst_case_usd: float | None  # None: a price is missing from the table
    estimate_usd: float | None
    as_of: str
    region: str
    missing: tuple[str, ...]
    # Unrounded totals: what sums (a sweep's, a budget check) add up, rounding once at the end.
    worst_case_exact: float | None = None
    estimate_exact: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "worst_case_usd": self.worst_case_usd,
            "estimate_usd": self.estimate_usd,
            "worst_case_exact": self.worst_case_exact,
            "estimate_exact": self.estimate_exact,
            "prices_as_of": self.as_of,
            "prices_region": self.region,
            "missing_prices": list(self.missing),
            "lines": [asdict(line) for line in self.lines],
        }


def _r(value: float) -> float:
    return round(value, 2)


def rollout_task_hourly(spec: ExperimentSpec, table: dict[str, Any] | None = None) -> float:
    """One rollout task's on-demand price per hour (vCPU, memory, storage beyond the free part)."""
    table = table or prices()
    return float(
        spec.rollouts.vcpus * table["fargate_vcpu_hourly"]
        + spec.rollouts.memory_mib / 1024 * table["fargate_gb_hourly"]
        + max(ROLLOUT_STORAGE_GB - table["fargate_free_storage_gb"], 0)
        * table["fargate_storage_gb_hourly"]
    )


def trainer_hourly(spec: ExperimentSpec, table: dict[str, Any] | None = None) -> float | None:
    """The trainer instance's price per hour (None: not in the table)."""
    table = table or prices()
    price = table["sagemaker_training_hourly"].get(spec.trainer.instance_type)
    return None if price is None else float(price)


class _Lines:
    """Cost lines with their exact (unrounded) figures kept for the totals."""

    def __init__(self) -> None:
        self.lines: list[CostLine] = []
        self.worst = 0.0
        self.estimate = 0.0

    def add(
        self, item: str, quantity: float, unit: str, worst: float | None, estimate: float | None
    ) -> None:
        self.lines.append(
            CostLine(
                item,
                _r(quantity),
                unit,
                None if worst is None else _r(worst),
                None if estimate is None else _r(estimate),
            )
        )
        self.worst += worst or 0.0
        self.estimate += estimate or 0.0


def run_cost(
    spec: ExperimentSpec, *, spot: bool = True, backend: str = "batch", public_ip: bool = True
) -> RunCost:
    """The run's cost lines: ``spot`` prices the estimate's rollouts on Fargate Spot,
    ``public_ip`` (egress ``public``, the default) adds each task's public IPv4 address."""
    table = prices()
    hours = spec.trainer.max_run_minutes / 60
    # Rollouts may outlive the trainer by the margin their jobs are given (run_properties.py);
    # they stop with it, so the estimate uses the trainer's hours and the worst case adds it.
    margin = ROLLOUT_MARGIN_SECONDS / 3600
    count = spec.rollouts.count
    missing: list[str] = []
    lines = _Lines()
    trainer_price = trainer_hourly(spec, table)
    if trainer_price is None:
        missing.append(f"SageMaker training {spec.trainer.instance_type}")
    trainer = None if trainer_price is None else trainer_price * hours
    lines.add(f"trainer {spec.trainer.instance_type}", hours, "instance-hours", trainer, trainer)
    if backend == "robomaker":
        # AWS retired RoboMaker on 2025-09-10: no price exists to write down.
        missing.append("RoboMaker simulation jobs (the service was retired on 2025-09-10)")
        lines.add(
            f"rollouts {count} RoboMaker simulation jobs", count * hours, "job-hours", None, None
        )
    else:
        task = rollout_task_hourly(spec, table)
        discount = 1 - table["fargate_spot_discount"] if spot else 1.0
        size = f"{count} x {spec.rollouts.vcpus} vCPU / {spec.rollouts.memory_mib} MiB"
        lines.add(
            f"rollouts {size} (Fargate{' Spot' if spot else ''})",
            count * hours,
            "task-hours",
            count * hours * task,
            count * hours * task * discount,
        )
        lines.add(
            f"rollouts after the trainer (worst case: {ROLLOUT_MARGIN_SECONDS // 60} min margin)",
            count * margin,
            "task-hours",
            count * margin * task,
            0.0,
        )
        if public_ip:
            ip = table["public_ipv4_hourly"]
            lines.add(
                f"public IPv4 of {count} tasks (egress public)",
                count * (hours + margin),
                "address-hours",
                count * (hours + margin) * ip,
                count * hours * ip,
            )
    logs = table["cloudwatch_logs_ingest_per_gb"]
    log_rate = table["log_gb_per_job_hour"]
    log_worst = (hours + count * (hours + margin)) * log_rate
    log_estimate = (hours + count * hours) * log_rate
    lines.add("job logs (CloudWatch Logs)", log_worst, "GB", log_worst * logs, log_estimate * logs)
    if spec.video:
        video = count * hours * table["video_gb_per_hour"] * table["kinesis_video_ingest_per_gb"]
        lines.add(f"video {count} streams", count * hours, "stream-hours", video, video)
    if spec.evaluation is not None and backend != "robomaker":
        legs = len(spec.evaluation.tracks) * (2 if spec.evaluation.both_directions else 1)
        leg_hours = legs * table["evaluation_hours_per_leg"]
        task = rollout_task_hourly(spec, table)
        discount = 1 - table["fargate_spot_discount"] if spot else 1.0
        lines.add(
            f"evaluation {legs} legs",
            leg_hours,
            "task-hours",
            leg_hours * task,
            leg_hours * task * discount,
        )
    known = not missing
    return RunCost(
        lines=tuple(lines.lines),
        worst_case_usd=_r(lines.worst) if known else None,
        estimate_usd=_r(lines.estimate) if known else None,
        as_of=str(table["as_of"]),
        region=str(table["region"]),
        missing=tuple(missing),
        worst_case_exact=lines.worst if known else None,
        estimate_exact=lines.estimate if known else None,
    )


def budget_problems(specs: list[ExperimentSpec], file: str) -> list[Problem]:
    """Why a file exceeds its ``budget_usd`` (empty: it does not, or has none). For a sweep the
    budget covers all its variants together."""
    if not specs or specs[0].budget_usd is None:
        return []
    budget = specs[0].budget_usd
    costs = [run_cost(spec, spot=False) for spec in specs]
    missing = sorted({m for cost in costs for m in cost.missing})
    if missing:
        return [
            Problem(
                file,
                "budget_usd",
                budget,
                f"cannot be checked: no price for {', '.join(missing)} in "
                "rollouts/data/prices.json (add it there, or drop budget_usd)",
            )
        ]
    worst = round(sum(cost.worst_case_exact or 0.0 for cost in costs), 2)
    if worst <= budget:
        return []
    what = (
        f"the {len(specs)} variants' worst case together"
        if len(specs) > 1
        else "the run's worst case"
    )
    return [
        Problem(
            file,
            "budget_usd",
            budget,
            f"is below {what}, ${worst:.2f} (every trainer's full max_run_minutes on demand, "
            f"{costs[0].region} prices of {costs[0].as_of}): raise it, or lower "
            "trainer.max_run_minutes, rollouts.count, the instance sizes or the sweep",
        )
    ]
