"""Training metrics of every rollout worker: load, validate, derive iterations, aggregate.

The simapp writes one metrics JSON per worker (``metrics/TrainingMetrics.json`` for worker 0,
``metrics/TrainingMetrics_<i>.json`` for worker i >= 1; the DeepRacer workshop wrote
``training_metrics.json``), ``{"metrics": [row, ...], ...}`` with one row per episode and no
iteration field. Rules used here (documented in ``docs/cli.md``):

* **Iteration.** Episodes per iteration ``E`` (hyperparameter ``num_episodes_between_training``)
  are split over ``N`` workers: worker ``k`` runs ``len(range(k, E, N))`` of them per iteration.
  A worker's ``episode`` counts its own episodes from 1, so its row belongs to iteration
  ``(episode - 1) // e_k + 1``. Evaluation rows carry the episode number of the last training
  episode before them, so the same formula puts them in the iteration they evaluate.
* **Phase.** A row without ``phase`` is an evaluation trial (the evaluation job's metrics have
  neither ``phase`` nor ``episode``). An evaluation row without ``episode`` belongs to no iteration
  and is summarised separately (``evaluation_trials``).
* **Completion** means ``episode_status == "Lap complete"``; the lap time of such an episode is its
  ``elapsed_time_in_milliseconds``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAP_COMPLETE = "Lap complete"
TRAINING = "training"
EVALUATION = "evaluation"
PHASES = (TRAINING, EVALUATION)
OVERALL = "overall"

# Per-trial counts of an evaluation job's rows (bundle/markov/metrics/s3_metrics.py, EvalMetrics).
COUNT_KEYS = (
    "off_track_count",
    "crash_count",
    "reversed_count",
    "immobilized_count",
    "reset_count",
)

# What each leg of an evaluation writes (lambda/evaluation/plan.py: METRICS_S3_OBJECT_KEY).
EVALUATION_LEG_FILE = "metrics.json"

# TrainingMetrics.json, TrainingMetrics_3.json, training_metrics.json (workshop), any case.
METRICS_NAME = re.compile(r"^training_?metrics(?:_(\d+))?\.json$", re.IGNORECASE)


class MetricsError(ValueError):
    """A metrics file is missing, unreadable or malformed; the message names file and place."""


@dataclass(frozen=True)
class Episode:
    worker: int
    phase: str
    episode: int | None
    trial: int | None
    reward: float | None
    progress: float
    status: str
    elapsed_ms: float | None
    iteration: int | None = None
    # An evaluation job's per-trial counts (off_track_count, crash_count, ...), when given.
    counts: Mapping[str, float] | None = None

    @property
    def completed(self) -> bool:
        return self.status == LAP_COMPLETE


@dataclass(frozen=True)
class WorkerMetrics:
    worker: int
    source: str
    episodes: tuple[Episode, ...]


@dataclass(frozen=True)
class Aggregate:
    """One row of the per-iteration table (``worker`` is an index or ``"overall"``)."""

    iteration: int
    phase: str
    worker: int | str
    episodes: int
    mean_reward: float | None
    best_reward: float | None
    mean_progress: float
    completion_rate: float
    best_lap_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "phase": self.phase,
            "worker": self.worker,
            "episodes": self.episodes,
            "mean_reward": _round(self.mean_reward),
            "best_reward": _round(self.best_reward),
            "mean_progress": _round(self.mean_progress),
            "completion_rate": _round(self.completion_rate),
            "best_lap_seconds": _round(self.best_lap_seconds),
        }


@dataclass(frozen=True)
class Report:
    episodes_per_iteration: int
    workers: tuple[WorkerMetrics, ...]
    rows: tuple[Aggregate, ...]
    evaluation_trials: tuple[Episode, ...] = ()
    notes: tuple[str, ...] = field(default=())
    run_workers: int | None = None  # workers of the run (files may be missing for some)
    # Files of workers with an index >= the run's worker count: left out of every row.
    ignored: tuple[WorkerMetrics, ...] = ()

    @property
    def worker_count(self) -> int:
        return self.run_workers or len(self.workers)

    @property
    def iterations(self) -> int:
        """Number of iterations with at least one training episode (the last may be partial)."""
        seen = {row.iteration for row in self.rows if row.phase == TRAINING}
        return max(seen) if seen else 0

    def select(self, phase: str, worker: int | str) -> list[Aggregate]:
        return [row for row in self.rows if row.phase == phase and row.worker == worker]

    def as_dict(self) -> dict[str, Any]:
        trials = self.evaluation_trials
        return {
            "episodes_per_iteration": self.episodes_per_iteration,
            "worker_count": self.worker_count,
            "workers": [
                {
                    "worker": w.worker,
                    "source": w.source,
                    "episodes": len(w.episodes),
                    "episodes_per_iteration": episodes_for_worker(
                        self.episodes_per_iteration, self.worker_count, w.worker
                    ),
                }
                for w in self.workers
            ],
            "iterations": self.iterations,
            "rows": [row.as_dict() for row in self.rows],
            "evaluation_trials": trial_summary(trials) if trials else None,
            "notes": list(self.notes),
            "ignored_workers": [
                {"worker": w.worker, "source": w.source, "episodes": len(w.episodes)}
                for w in self.ignored
            ],
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# ----------------------------------------------------------------------------- parsing


def worker_index(name: str) -> int | None:
    """Worker index encoded in a metrics file name, or None if the name is not a metrics name."""
    match = METRICS_NAME.match(name)
    if not match:
        return None
    return int(match.group(1)) if match.group(1) else 0


def parse(data: bytes | str, *, source: str, worker: int) -> WorkerMetrics:
    """Parse one worker's metrics JSON; raise ``MetricsError`` saying what is wrong and where."""
    text = decode(data, source)
    if not text.strip():
        raise MetricsError(
            f"{source}: the file is empty (the simapp writes it after the first "
            "episode; wait for one or check the path)"
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        stripped = text.strip().lstrip("\ufeff")
        if stripped[:1] not in ("{", "["):
            raise MetricsError(
                f"{source}: not JSON: it begins {stripped[:30]!r} (a metrics file is the JSON "
                'the simapp writes: {"metrics": [...]})'
            ) from None
        ending = stripped[-1:]
        hint = (
            "; it looks truncated (the simapp rewrites it after every episode: fetch it again)"
            if ending not in ("}", "]")
            else ""
        )
        raise MetricsError(
            f"{source}: not valid JSON: {error.msg} (line {error.lineno}, "
            f"column {error.colno}){hint}"
        ) from None
    if not isinstance(document, Mapping) or "metrics" not in document:
        raise MetricsError(
            f'{source}: expected a JSON object with a "metrics" list '
            f"(got {type(document).__name__}{_keys(document)})"
        )
    rows = document["metrics"]
    if not isinstance(rows, list):
        raise MetricsError(
            f'{source}: "metrics" must be a list of episode rows, got {type(rows).__name__}'
        )
    episodes = [_episode(row, source=source, index=i, worker=worker) for i, row in enumerate(rows)]
    return WorkerMetrics(worker=worker, source=source, episodes=tuple(episodes))


def decode(data: bytes | str, source: str) -> str:
    """JSON bytes as text: UTF-8 (what the simapp writes; a BOM is allowed) or UTF-16/32 with
    the encoding detected as ``json.loads`` does; anything else is a ``MetricsError``."""
    if isinstance(data, str):
        return data
    encoding = json.detect_encoding(data)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise MetricsError(
            f"{source}: not {encoding.upper().removesuffix('-SIG')} text: byte "
            f"0x{data[error.start]:02x} at offset {error.start} cannot be decoded "
            "(metrics and hyperparameters are UTF-8 JSON)"
        ) from None


def _keys(document: Any) -> str:
    if isinstance(document, Mapping):
        return " with keys " + ", ".join(sorted(map(str, document))) if document else ", empty"
    return ""


# Keys that count or measure: never below zero (reward_score may be anything).
NON_NEGATIVE = ("elapsed_time_in_milliseconds", "completion_percentage", "trial", *COUNT_KEYS)


def _number(row: Mapping[str, Any], key: str, where: str, *, required: bool) -> float | None:
    value = row.get(key)
    if value is None:
        if required:
            raise MetricsError(
                f"{where}: missing key {key!r} (row keys: "
                f"{', '.join(sorted(map(str, row))) or 'none'})"
            )
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MetricsError(f"{where}: {key} = {value!r} is not a number")
    if value < 0 and key in NON_NEGATIVE:
        # A negative lap time would rank best; the simapp never writes one.
        raise MetricsError(f"{where}: {key} = {value!r} is negative")
    return float(value)


def _episode(row: Any, *, source: str, index: int, worker: int) -> Episode:
    where = f"{source}: metrics[{index}]"
    if not isinstance(row, Mapping):
        raise MetricsError(f"{where}: expected an object per episode, got {type(row).__name__}")
    phase = row.get("phase", EVALUATION)
    if phase not in PHASES:
        raise MetricsError(f"{where}: phase = {phase!r} is not one of {', '.join(PHASES)}")
    training = phase == TRAINING
    episode = _number(row, "episode", where, required=training)
    if episode is not None and (episode < 1 or episode != int(episode)):
        raise MetricsError(f"{where}: episode = {row.get('episode')!r} is not a positive integer")
    status = row.get("episode_status")
    if not isinstance(status, str):
        raise MetricsError(f"{where}: missing key 'episode_status' (or not a string)")
    progress = _number(row, "completion_percentage", where, required=True)
    assert progress is not None
    trial = _number(row, "trial", where, required=False)
    return Episode(
        worker=worker,
        phase=phase,
        episode=None if episode is None else int(episode),
        trial=None if trial is None else int(trial),
        reward=_number(row, "reward_score", where, required=training),
        progress=progress,
        status=status,
        elapsed_ms=_number(
            row, "elapsed_time_in_milliseconds", where, required=status == LAP_COMPLETE
        ),
        counts={
            key: value
            for key in COUNT_KEYS
            if (value := _number(row, key, where, required=False)) is not None
        }
        or None,
    )


# ----------------------------------------------------------------------------- iterations


def episodes_for_worker(episodes_per_iteration: int, workers: int, worker: int) -> int:
    """How many of the E episodes of one iteration worker ``worker`` of ``workers`` runs
    (0 for a worker index outside the run)."""
    if worker >= max(workers, 1):
        return 0
    return len(range(worker, episodes_per_iteration, max(workers, 1)))


def with_iterations(
    workers: Sequence[WorkerMetrics], episodes_per_iteration: int, worker_count: int | None = None
) -> tuple[list[WorkerMetrics], list[str]]:
    """Return the workers with ``iteration`` set on each row that has an episode number."""
    if episodes_per_iteration < 1:
        raise MetricsError(
            f"episodes per iteration must be at least 1, got {episodes_per_iteration}"
        )
    count = worker_count or (max((w.worker for w in workers), default=0) + 1)
    notes: list[str] = []
    result = []
    for metrics in workers:
        share = episodes_for_worker(episodes_per_iteration, count, metrics.worker)
        if share == 0:
            notes.append(
                f"worker {metrics.worker} runs no episodes with {episodes_per_iteration} "
                f"episodes per iteration over {count} workers; its rows are ignored"
            )
            result.append(WorkerMetrics(metrics.worker, metrics.source, ()))
            continue
        episodes = tuple(
            Episode(
                **{
                    **e.__dict__,
                    "iteration": None if e.episode is None else (e.episode - 1) // share + 1,
                }
            )
            for e in metrics.episodes
        )
        result.append(WorkerMetrics(metrics.worker, metrics.source, episodes))
    return result, notes


def _aggregate(iteration: int, phase: str, worker: int | str, rows: Sequence[Episode]) -> Aggregate:
    rewards = [r.reward for r in rows if r.reward is not None]
    laps = [r.elapsed_ms for r in rows if r.completed and r.elapsed_ms is not None]
    return Aggregate(
        iteration=iteration,
        phase=phase,
        worker=worker,
        episodes=len(rows),
        mean_reward=sum(rewards) / len(rewards) if rewards else None,
        best_reward=max(rewards) if rewards else None,
        mean_progress=sum(r.progress for r in rows) / len(rows),
        completion_rate=sum(1 for r in rows if r.completed) / len(rows),
        best_lap_seconds=min(laps) / 1000 if laps else None,
    )


def aggregate(workers: Sequence[WorkerMetrics]) -> list[Aggregate]:
    """Per-iteration aggregates per worker and overall, ordered by phase, iteration, worker."""
    groups: dict[tuple[str, int, int | str], list[Episode]] = {}
    for metrics in workers:
        for row in metrics.episodes:
            if row.iteration is None:
                continue
            groups.setdefault((row.phase, row.iteration, metrics.worker), []).append(row)
            groups.setdefault((row.phase, row.iteration, OVERALL), []).append(row)

    def order(key: tuple[str, int, int | str]) -> tuple[int, int, int]:
        phase, iteration, worker = key
        return (PHASES.index(phase), iteration, -1 if worker == OVERALL else int(worker))

    return [_aggregate(k[1], k[0], k[2], groups[k]) for k in sorted(groups, key=order)]


def build_report(
    workers: Sequence[WorkerMetrics], episodes_per_iteration: int, worker_count: int | None = None
) -> Report:
    if not workers:
        raise MetricsError("no metrics files found")
    ordered = sorted(workers, key=lambda w: w.worker)
    count = worker_count or (ordered[-1].worker + 1)
    # A file of worker k >= count (e.g. left over from an earlier run with more workers, or a
    # --workers below the files found) belongs to no worker of this run: it is left out of every
    # row and reported in ``ignored`` (the CLI warns about it).
    ignored = tuple(w for w in ordered if w.worker >= count)
    ordered = [w for w in ordered if w.worker < count]
    if not ordered:
        raise MetricsError(
            f"no metrics of workers 0..{count - 1}: only of worker(s) "
            + ", ".join(str(w.worker) for w in ignored)
        )
    staged, notes = with_iterations(ordered, episodes_per_iteration, count)
    trials = tuple(e for w in staged for e in w.episodes if e.iteration is None)
    return Report(
        episodes_per_iteration=episodes_per_iteration,
        workers=tuple(staged),
        rows=tuple(aggregate(staged)),
        evaluation_trials=trials,
        notes=tuple(notes),
        run_workers=count,
        ignored=ignored,
    )


def trial_summary(trials: Sequence[Episode]) -> dict[str, Any]:
    """Trials, mean progress, completion rate and lap times of episodes without iteration."""
    laps = [t.elapsed_ms for t in trials if t.completed and t.elapsed_ms is not None]
    return {
        "trials": len(trials),
        "mean_progress": _round(sum(t.progress for t in trials) / len(trials)),
        "completion_rate": _round(sum(1 for t in trials if t.completed) / len(trials)),
        "best_lap_seconds": _round(min(laps) / 1000) if laps else None,
        "mean_lap_seconds": _round(sum(laps) / len(laps) / 1000) if laps else None,
    }


# ----------------------------------------------------------------------------- sources


def hyperparameter_episodes(data: bytes | str, source: str) -> int:
    """``num_episodes_between_training`` from a hyperparameters JSON (strings are accepted:
    SageMaker passes hyperparameters as strings)."""
    try:
        values = json.loads(decode(data, source))
    except json.JSONDecodeError as error:
        raise MetricsError(f"{source}: not valid JSON: {error.msg}") from None
    raw = values.get("num_episodes_between_training") if isinstance(values, Mapping) else None
    try:
        number = int(str(raw).strip('"'))
    except ValueError:
        number = 0
    if raw is None or number < 1:
        raise MetricsError(
            f"{source}: num_episodes_between_training is missing or not a "
            f"positive integer ({raw!r})"
        )
    return number


def local_metrics_files(paths: Iterable[Path]) -> list[tuple[int, Path]]:
    """Resolve files and directories to (worker, file) pairs.

    A directory contributes the metrics files in it and in its ``metrics/`` folder, or, for an
    evaluation's folder (``<run>/evaluations/<id>/``), each leg's ``<leg>/metrics.json``. A file
    named like a metrics file gets the worker of its name; other files (e.g. a download
    renamed ``console-training-metrics.json``) take the lowest free worker index in the order
    given. Two files for the same worker are an error.
    """
    named: list[tuple[int, Path]] = []
    unnamed: list[Path] = []
    for path in paths:
        if path.is_dir():
            try:
                found = [
                    p
                    for folder in (path, path / "metrics")
                    if folder.is_dir()
                    for p in sorted(folder.iterdir())
                    if p.is_file() and worker_index(p.name) is not None
                ]
            except OSError as error:
                raise MetricsError(
                    f"{error.filename or path}: cannot be listed: {error.strerror}"
                ) from None
            legs = [] if found else sorted(path.glob(f"*/{EVALUATION_LEG_FILE}"))
            if not found and not legs:
                raise MetricsError(
                    f"{path}: no metrics files (TrainingMetrics.json, "
                    "TrainingMetrics_<i>.json, training_metrics.json) in it or in "
                    f"its metrics/ folder, and no evaluation legs (*/{EVALUATION_LEG_FILE})"
                )
            named.extend((worker_index(p.name) or 0, p) for p in found)
            unnamed.extend(legs)
        elif path.is_file():
            index = worker_index(path.name)
            if index is None:
                unnamed.append(path)
            else:
                named.append((index, path))
        else:
            raise MetricsError(f"{path}: no such file or directory")
    taken: dict[int, Path] = {}
    for index, path in named:
        if index in taken:
            raise MetricsError(
                f"{taken[index]} and {path} are both metrics of worker {index}; "
                "pass only one of them"
            )
        taken[index] = path
    free = (i for i in range(10_000) if i not in taken)
    for path in unnamed:
        taken[next(free)] = path
    return sorted(taken.items())


# ----------------------------------------------------------------------------- export


CSV_COLUMNS = (
    "iteration",
    "phase",
    "worker",
    "episodes",
    "mean_reward",
    "best_reward",
    "mean_progress",
    "completion_rate",
    "best_lap_seconds",
)


def to_csv(rows: Iterable[Aggregate]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.as_dict().items()})
    return out.getvalue()


def rolling_mean(values: Sequence[float | None], window: int) -> list[float | None]:
    """Trailing mean over the last ``window`` values that are not None."""
    result: list[float | None] = []
    for i in range(len(values)):
        recent = [v for v in values[max(0, i - window + 1) : i + 1] if v is not None]
        result.append(sum(recent) / len(recent) if recent else None)
    return result
