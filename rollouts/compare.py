"""Runs side by side: per-iteration curves overlaid, each run's best and last iteration, its
evaluation scores, and labels made of the settings that differ between the runs.

A run is described by what its prefix holds (``hyperparameters.json``, worker 0's
``training_params[_0].yaml``, ``reward_function.py``; see ``rollouts/contract.py``): the label of
a run is the settings in which it differs from the others (for a sweep, exactly its variant's
values), so three learning rates read as ``lr=0.0003``, ``lr=0.0001``, ... instead of stack names.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollouts.metrics import EVALUATION, OVERALL, TRAINING, Report
from rollouts.race import RaceReport

# key under the run prefix -> bytes or None
Reader = Callable[[str], bytes | None]
PARAM_KEYS = {"WORLD_NAME": "track", "RACE_TYPE": "race"}


@dataclass(frozen=True)
class Run:
    name: str  # what the user gave (experiment, run id or folder)
    report: Report
    settings: Mapping[str, Any]
    race: RaceReport | None = None
    label: str = ""


@dataclass(frozen=True)
class Summary:
    name: str
    label: str
    iterations: int
    best_iteration: int | None
    best_value: float | None
    best_by: str
    last_iteration: int | None
    last_reward: float | None
    last_progress: float | None
    evaluation: Mapping[str, Any] = field(default_factory=dict)


def run_settings(read: Reader) -> dict[str, Any]:
    """The settings a run was started with, as flat ``key: value`` pairs."""
    settings: dict[str, Any] = {}
    raw = read("hyperparameters.json")
    if raw is not None:
        try:
            for key, value in sorted(json.loads(raw).items()):
                settings[f"hyperparameters.{key}"] = value
        except (ValueError, AttributeError):
            pass
    for name in ("training_params.yaml", "training_params_0.yaml"):
        text = read(name)
        if text is None:
            continue
        for line in text.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(":")
            if key in PARAM_KEYS:
                settings[PARAM_KEYS[key]] = value.strip().strip("'\"")
        break
    reward = read("reward_function.py")
    if reward is not None:
        settings["reward_function"] = hashlib.sha256(reward).hexdigest()[:8]
    return settings


def labels(settings: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """Each run's label: the settings that differ between the runs (its name when none do)."""
    keys = sorted({k for s in settings for k in s})
    differing = [
        k for k in keys if len({json.dumps(s.get(k), sort_keys=True) for s in settings}) > 1
    ]
    result = []
    for s, name in zip(settings, names, strict=True):
        parts = [f"{k.removeprefix('hyperparameters.')}={_short(s.get(k))}" for k in differing]
        result.append(", ".join(parts) or name)
    if len(set(result)) != len(result):  # two runs alike in every setting: add their names
        result = [f"{label} ({name})" for label, name in zip(result, names, strict=True)]
    return result


def _short(value: Any) -> str:
    return "-" if value is None else str(value)


def summarize(run: Run) -> Summary:
    report = run.report
    evaluation = report.select(EVALUATION, OVERALL)
    training = report.select(TRAINING, OVERALL)
    # The best iteration is the one the simapp would keep: highest mean evaluation progress
    # (its default best_model_metric), else the highest mean training reward.
    best_value: float | None
    if evaluation:
        best = max(evaluation, key=lambda a: (a.mean_progress, -a.iteration))
        best_by, best_value = "evaluation progress %", best.mean_progress
    elif training:
        best = max(training, key=lambda a: (a.mean_reward or -math.inf, -a.iteration))
        best_by, best_value = "training reward", best.mean_reward
    else:
        best, best_by, best_value = None, "-", None
    last = training[-1] if training else None
    race = {}
    if run.race is not None:
        race = {
            s.track: {
                "best_lap_seconds": s.best_lap_seconds,
                "completed": s.completed,
                "trials": s.trials,
            }
            for s in run.race.tracks
        }
    return Summary(
        name=run.name,
        label=run.label,
        iterations=report.iterations,
        best_iteration=best.iteration if best else None,
        best_value=best_value,
        best_by=best_by,
        last_iteration=last.iteration if last else None,
        last_reward=last.mean_reward if last else None,
        last_progress=last.mean_progress if last else None,
        evaluation=race,
    )


def plot_runs(runs: Sequence[Run], out: Path, *, title: str = "runs compared") -> dict[str, Any]:
    """Mean reward and mean progress per iteration of every run, overlaid (one line per run)."""
    import matplotlib  # noqa: PLC0415 (heavy; only --plot needs it)

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), squeeze=False)
    drawn: dict[str, list[str]] = {"mean_reward": [], "mean_progress": []}
    colors = plt.get_cmap("tab10")
    try:
        for n, run in enumerate(runs):
            color = colors(n % 10)
            reward = run.report.select(TRAINING, OVERALL)
            axes[0][0].plot(
                [a.iteration for a in reward],
                [a.mean_reward if a.mean_reward is not None else math.nan for a in reward],
                color=color,
                label=run.label,
            )
            drawn["mean_reward"].append(run.label)
            progress = run.report.select(EVALUATION, OVERALL) or run.report.select(
                TRAINING, OVERALL
            )
            axes[0][1].plot(
                [a.iteration for a in progress],
                [a.mean_progress for a in progress],
                color=color,
                label=run.label,
            )
            drawn["mean_progress"].append(run.label)
        for ax, ylabel in zip(
            axes[0],
            ("mean training reward", "mean progress % (evaluation, else training)"),
            strict=True,
        ):
            ax.set_xlabel("iteration")
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return {"file": str(out), "panels": drawn}
