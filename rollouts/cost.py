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

    def as_dict(self) -> dict[str, Any]:
        return {
            "worst_case_usd": self.worst_case_usd,
            "estimate_usd": self.estimate_usd,
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


def run_cost(spec: ExperimentSpec, *, spot: bool = True) -> RunCost:
    table = prices()
    hours = spec.trainer.max_run_minutes / 60
    # Rollouts may outlive the trainer by the margin their jobs are given (run_properties.py);
    # they stop with it, so the estimate uses the trainer's hours and the worst case adds it.
    rollout_hours = hours + ROLLOUT_MARGIN_SECONDS / 3600
    missing: list[str] = []
    lines: list[CostLine] = []
    trainer_price = trainer_hourly(spec, table)
    if trainer_price is None:
        missing.append(f"SageMaker training {spec.trainer.instance_type}")
    trainer = None if trainer_price is None else trainer_price * hours
    lines.append(
        CostLine(
            f"trainer {spec.trainer.instance_type}",
            _r(hours),
            "instance-hours",
            None if trainer is None else _r(trainer),
            None if trainer is None else _r(trainer),
        )
    )
    task = rollout_task_hourly(spec, table)
    discount = 1 - table["fargate_spot_discount"] if spot else 1.0
    count = spec.rollouts.count
    lines.append(
        CostLine(
            f"rollouts {count} x {spec.rollouts.vcpus} vCPU / {spec.rollouts.memory_mib} MiB "
            f"(Fargate{' Spot' if spot else ''})",
            _r(count * hours),
            "task-hours",
            _r(count * rollout_hours * task),
            _r(count * hours * task * discount),
        )
    )
    if spec.video:
        video = count * hours * table["video_gb_per_hour"] * table["kinesis_video_ingest_per_gb"]
        lines.append(
            CostLine(
                f"video {count} streams", _r(count * hours), "stream-hours", _r(video), _r(video)
            )
        )
    if spec.evaluation is not None:
        legs = len(spec.evaluation.tracks) * (2 if spec.evaluation.both_directions else 1)
        leg_hours = legs * table["evaluation_hours_per_leg"]
        lines.append(
            CostLine(
                f"evaluation {legs} legs",
                _r(leg_hours),
                "task-hours",
                _r(leg_hours * task),
                _r(leg_hours * task * discount),
            )
        )
    known = not missing
    worst = sum(line.on_demand_usd or 0 for line in lines)
    estimate = sum(line.estimate_usd or 0 for line in lines)
    return RunCost(
        lines=tuple(lines),
        worst_case_usd=_r(worst) if known else None,
        estimate_usd=_r(estimate) if known else None,
        as_of=str(table["as_of"]),
        region=str(table["region"]),
        missing=tuple(missing),
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
    worst = round(sum(cost.worst_case_usd or 0 for cost in costs), 2)
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
