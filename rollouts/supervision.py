"""What the run supervisor needs to know of an experiment: its rules and its hourly rates.

The experiment stack publishes this as its ``Supervision`` output, which the platform's
supervisor reads with the stack's status (lambda/supervisor/observe.py, ``parse_rules``). An
output, not a property of the run: changing a rule changes no run.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rollouts.cost import prices, rollout_task_hourly, trainer_hourly

if TYPE_CHECKING:
    from rollouts.spec import ExperimentSpec

OUTPUT_NAME = "Supervision"


def supervision(spec: ExperimentSpec) -> dict[str, Any]:
    table = prices()
    trainer = trainer_hourly(spec, table)
    return {
        "onFailure": spec.rollouts.on_failure,
        "maxRestarts": spec.rollouts.max_restarts,
        "stallMinutes": spec.rollouts.stall_minutes,
        "budgetUsd": spec.budget_usd,
        # On-demand rates of the dated table (rollouts/data/prices.json): the cost so far is an
        # upper bound on Spot.
        "trainerUsdPerHour": round(trainer, 6) if trainer is not None else 0.0,
        "rolloutUsdPerHour": round(rollout_task_hourly(spec, table), 6),
        "pricesAsOf": str(table["as_of"]),
    }


def supervision_json(spec: ExperimentSpec) -> str:
    return json.dumps(supervision(spec), sort_keys=True, separators=(",", ":"))
