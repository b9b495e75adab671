"""Race scoring of evaluation metrics: one row per trial, aggregates per track and direction, and
the rankings DeepRacer races use.

The simapp's evaluation worker writes ``{"metrics": [row, ...]}`` with no ``version`` key and rows
without ``phase`` or ``episode`` (``bundle/markov/metrics/s3_metrics.py``, ``EvalMetrics``):
``trial``, ``episode_status``, ``completion_percentage``, ``elapsed_time_in_milliseconds`` and the
counts ``off_track_count``, ``crash_count``, ``reversed_count``, ``immobilized_count``,
``reset_count``. That is how an evaluation file is told apart from a training one (whose rows
all carry ``phase`` and whose training rows carry ``episode``).

Penalties. When a reset is allowed (``NUMBER_OF_RESETS`` > 0) the simapp freezes the car for the
penalty seconds (off track and reversed: ``OFF_TRACK_PENALTY``, crash: ``COLLISION_PENALTY``,
immobilized: none) while the lap clock runs on (``bundle/markov/agent_ctrl/
rollout_agent_ctrl.py``), so ``elapsed_time_in_milliseconds`` already includes them. The
penalty seconds shown here are that part of the lap time, from the counts and the penalties the
evaluation used; nothing is added to the lap time twice.

Rankings: the fastest single complete lap, the best average over K consecutive complete trials
(trials in the order they were driven, all K complete), and the total time of all trials when
every trial completed its lap.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from rollouts.metrics import EVALUATION, LAP_COMPLETE, Episode, WorkerMetrics

# The simapp's own defaults (bundle/markov/evaluation_worker.py, argparse defaults).
DEFAULT_OFF_TRACK_PENALTY = 2.0
DEFAULT_COLLISION_PENALTY = 5.0
DEFAULT_CONSECUTIVE = 3
# Generic file names: the folder names the track instead (our evaluations write
# <evaluation>/<track>-<direction>/metrics.json).
GENERIC_NAMES = ("metrics", "evaluation", "evaluation_metrics", "evaluationmetrics")


@dataclass(frozen=True)
class Trial:
    track: str  # the track and direction (or the file) the trial belongs to
    source: str
    trial: int  # 1-based, in the order driven
    status: str
    completion_percentage: float
    lap_seconds: float | None
    off_track: int
    crashes: int
    reversed: int
    immobilized: int
    resets: int
    penalty_seconds: float

    @property
    def completed(self) -> bool:
        return self.status == LAP_COMPLETE


@dataclass(frozen=True)
class TrackScore:
    track: str
    trials: int
    completed: int
    mean_completion_percentage: float
    best_lap_seconds: float | None
    best_consecutive_seconds: float | None  # average of the best K consecutive complete laps
    total_seconds: float | None  # all trials' time, when every trial completed
    off_track: int
    crashes: int
    resets: int
    penalty_seconds: float


@dataclass(frozen=True)
class RaceReport:
    consecutive: int
    off_track_penalty: float
    collision_penalty: float
    trials: tuple[Trial, ...]
    tracks: tuple[TrackScore, ...]

    def rankings(self) -> dict[str, list[str]]:
        """Tracks (or files) in race order for each ranking; those without a figure are left out."""

        def order(key: str) -> list[str]:
            scored = [s for s in self.tracks if getattr(s, key) is not None]
            return [s.track for s in sorted(scored, key=lambda s: (getattr(s, key), s.track))]

        return {
            "best_lap": order("best_lap_seconds"),
            f"best_{self.consecutive}_consecutive": order("best_consecutive_seconds"),
            "total_time": order("total_seconds"),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "consecutive": self.consecutive,
            "penalties": {
                "off_track_seconds": self.off_track_penalty,
                "collision_seconds": self.collision_penalty,
                "included_in_lap_time": True,
            },
            "trials": [asdict(t) for t in self.trials],
            "tracks": [asdict(s) for s in self.tracks],
            "rankings": self.rankings(),
        }


def is_evaluation_file(metrics: WorkerMetrics) -> bool:
    """True for an evaluation job's metrics: rows, none of them training, none numbered by
    episode."""
    return bool(metrics.episodes) and all(
        e.phase == EVALUATION and e.episode is None for e in metrics.episodes
    )


def track_label(source: str) -> str:
    path = PurePosixPath(source.removeprefix("s3://"))
    if path.stem.lower().replace("-", "_") in GENERIC_NAMES and path.parent.name:
        return path.parent.name
    return path.stem


def _count(value: float | None) -> int:
    return int(value or 0)


def _trial(
    e: Episode, *, track: str, source: str, index: int, off: float, collision: float
) -> Trial:
    counts = e.counts or {}
    off_track, crashes = _count(counts.get("off_track_count")), _count(counts.get("crash_count"))
    reversed_ = _count(counts.get("reversed_count"))
    return Trial(
        track=track,
        source=source,
        trial=index,
        status=e.status,
        completion_percentage=e.progress,
        lap_seconds=None if e.elapsed_ms is None else round(e.elapsed_ms / 1000, 3),
        off_track=off_track,
        crashes=crashes,
        reversed=reversed_,
        immobilized=_count(counts.get("immobilized_count")),
        resets=_count(counts.get("reset_count")),
        penalty_seconds=round((off_track + reversed_) * off + crashes * collision, 3),
    )


def best_consecutive(trials: Sequence[Trial], k: int) -> float | None:
    """The lowest mean lap time over ``k`` consecutive trials that all completed."""
    best = None
    for start in range(len(trials) - k + 1):
        window = trials[start : start + k]
        if all(t.completed and t.lap_seconds is not None for t in window):
            mean = sum(t.lap_seconds or 0.0 for t in window) / k
            best = mean if best is None else min(best, mean)
    return None if best is None else round(best, 3)


def _score(track: str, trials: Sequence[Trial], k: int) -> TrackScore:
    laps = [t.lap_seconds for t in trials if t.completed and t.lap_seconds is not None]
    every_lap_done = all(t.completed and t.lap_seconds is not None for t in trials)
    return TrackScore(
        track=track,
        trials=len(trials),
        completed=sum(t.completed for t in trials),
        mean_completion_percentage=round(
            sum(t.completion_percentage for t in trials) / len(trials), 2
        ),
        best_lap_seconds=min(laps) if laps else None,
        best_consecutive_seconds=best_consecutive(trials, k),
        total_seconds=round(sum(laps), 3) if every_lap_done else None,
        off_track=sum(t.off_track for t in trials),
        crashes=sum(t.crashes for t in trials),
        resets=sum(t.resets for t in trials),
        penalty_seconds=round(sum(t.penalty_seconds for t in trials), 3),
    )


def score(
    files: Sequence[WorkerMetrics],
    *,
    consecutive: int = DEFAULT_CONSECUTIVE,
    off_track_penalty: float = DEFAULT_OFF_TRACK_PENALTY,
    collision_penalty: float = DEFAULT_COLLISION_PENALTY,
) -> RaceReport:
    trials: list[Trial] = []
    by_track: dict[str, list[Trial]] = {}
    for metrics in files:
        track = track_label(metrics.source)
        if track in by_track:  # two files of one name: keep them apart
            track = f"{track} ({metrics.source})"
        rows = [
            _trial(
                e,
                track=track,
                source=metrics.source,
                index=i,
                off=off_track_penalty,
                collision=collision_penalty,
            )
            for i, e in enumerate(metrics.episodes, start=1)
        ]
        by_track[track] = rows
        trials += rows
    return RaceReport(
        consecutive=consecutive,
        off_track_penalty=off_track_penalty,
        collision_penalty=collision_penalty,
        trials=tuple(trials),
        tracks=tuple(_score(t, rows, consecutive) for t, rows in sorted(by_track.items())),
    )


TRIAL_COLUMNS = tuple(Trial.__dataclass_fields__)


def trials_csv(report: RaceReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TRIAL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for trial in report.trials:
        writer.writerow({k: "" if v is None else v for k, v in asdict(trial).items()})
    return out.getvalue()


def plot_laps(report: RaceReport, out: Any, *, title: str | None = None) -> dict[str, Any]:
    """Lap time per trial, one line per track; trials that did not complete are marked at the
    bottom with their completion percentage. Returns what was drawn."""
    import matplotlib  # noqa: PLC0415 (heavy; only --plot needs it)

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(10, 5.5))
    drawn: dict[str, Any] = {}
    try:
        colors = plt.get_cmap("tab10")
        for n, track in enumerate(s.track for s in report.tracks):
            rows = [t for t in report.trials if t.track == track]
            done = [t for t in rows if t.completed and t.lap_seconds is not None]
            color = colors(n % 10)
            # A trial that did not finish breaks the line: no lap time to join across it.
            ax.plot(
                [t.trial for t in rows],
                [
                    t.lap_seconds if t in done and t.lap_seconds is not None else math.nan
                    for t in rows
                ],
                marker="o",
                color=color,
                label=f"{track} (best {min(t.lap_seconds or 0 for t in done):.3f} s)"
                if done
                else f"{track} (no complete lap)",
            )
            for t in rows:
                if t not in done:
                    ax.annotate(
                        f"{t.completion_percentage:.0f}%",
                        (t.trial, 0),
                        xycoords=("data", "axes fraction"),
                        xytext=(0, 4),
                        textcoords="offset points",
                        ha="center",
                        color=color,
                        fontsize=8,
                    )
                    ax.plot([t.trial], [0], "x", color=color, transform=ax.get_xaxis_transform())
            drawn[track] = {"laps": len(done), "not_completed": len(rows) - len(done)}
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel("lap time (s, penalties included)")
        ax.set_title(title or "evaluation lap times")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return {"file": str(out), "tracks": drawn}
