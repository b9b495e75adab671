"""Reward and progress curves per iteration as a PNG (matplotlib, Agg backend: no display).

A 2 x 2 grid: rows are mean reward and mean progress, columns the training and evaluation
phases. Each panel has one line per worker (per-iteration mean), the overall per-iteration
mean, and the overall rolling mean. A last training iteration with fewer episodes than an
iteration holds (a run in progress or stopped) is circled and labelled as partial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollouts.metrics import EVALUATION, OVERALL, TRAINING, Report, rolling_mean

METRICS = (("mean_reward", "mean reward"), ("mean_progress", "mean progress (%)"))


def plot(report: Report, out: Path, *, window: int = 5, title: str | None = None) -> dict[str, Any]:
    """Draw the report into ``out`` (PNG); return what each panel shows (for tests and --json)."""
    import matplotlib  # noqa: PLC0415 (heavy; only the metrics --plot path needs it)

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt  # noqa: PLC0415

    workers = [w.worker for w in report.workers]
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, 2, figsize=(13, 8), sharex="col", squeeze=False)
    panels: dict[str, list[str]] = {}
    partial: dict[str, int] | None = None
    try:
        for col, phase in enumerate((TRAINING, EVALUATION)):
            for row, (key, label) in enumerate(METRICS):
                ax = axes[row][col]
                name = f"{phase}/{key}"
                panels[name] = []
                overall = report.select(phase, OVERALL)
                if not overall:
                    ax.text(
                        0.5,
                        0.5,
                        f"no {phase} episodes",
                        ha="center",
                        va="center",
                        transform=ax.transAxes,
                        color="0.4",
                    )
                    ax.set_yticks([])
                else:
                    for worker in workers:
                        series = report.select(phase, worker)
                        if not series:
                            continue
                        line_label = f"worker {worker}"
                        ax.plot(
                            [a.iteration for a in series],
                            [getattr(a, key) for a in series],
                            color=colors(worker % 10),
                            linewidth=0.9,
                            alpha=0.55,
                            marker=".",
                            markersize=3,
                            label=line_label,
                        )
                        panels[name].append(line_label)
                    xs = [a.iteration for a in overall]
                    ys = [getattr(a, key) for a in overall]
                    ax.plot(
                        xs,
                        ys,
                        color="0.15",
                        linewidth=1.1,
                        marker="o",
                        markersize=3,
                        label="overall",
                    )
                    roll_label = f"overall, rolling mean ({window})"
                    ax.plot(
                        xs,
                        rolling_mean(ys, window),
                        color="crimson",
                        linewidth=2.4,
                        label=roll_label,
                    )
                    panels[name] += ["overall", roll_label]
                    last = overall[-1]
                    if phase == TRAINING and last.episodes < report.episodes_per_iteration:
                        partial = {"iteration": last.iteration, "episodes": last.episodes}
                        # The run is still in (or stopped in) this iteration: flag its mean as
                        # based on fewer episodes rather than let it read as a collapse.
                        ax.plot(
                            [last.iteration],
                            [getattr(last, key)],
                            linestyle="none",
                            marker="o",
                            markersize=9,
                            markerfacecolor="white",
                            markeredgecolor="crimson",
                            label=f"partial: {last.episodes}/{report.episodes_per_iteration} "
                            "episodes",
                        )
                    ax.legend(loc="best", fontsize=8, frameon=False)
                ax.grid(True, alpha=0.3)
                ax.set_ylabel(label)
                if row == 0:
                    ax.set_title(f"{phase} phase")
                if row == len(METRICS) - 1:
                    ax.set_xlabel("iteration")
        heading = title or "Training metrics"
        fig.suptitle(
            f"{heading}: {len(workers)} worker(s), {report.iterations} iteration(s), "
            f"{report.episodes_per_iteration} episodes per iteration"
        )
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=100)
    finally:
        plt.close(fig)
    return {"file": str(out), "panels": panels, "partial_iteration": partial}
