"""What one evaluation of a run writes and submits; no AWS calls here.

The simapp's evaluation (``bundle/src/deepracer_simulation_environment/launch/
evaluation.launch.py`` -> ``markov/evaluation_worker.py``) reads its params YAML from
``MODEL_S3_BUCKET``/``MODEL_S3_PREFIX`` + ``S3_YAML_NAME``, loads the checkpoint that
``<MODEL_S3_PREFIX>/model/deepracer_checkpoints.json`` names for ``EVAL_CHECKPOINT`` (best or
last) and rewrites ``<MODEL_S3_PREFIX>/model/.coach_checkpoint``. So each evaluation gets its own
copy of the chosen checkpoint under ``<run>/evaluations/<id>/model/`` with a checkpoints file
naming it as both best and last: any kept checkpoint can be evaluated and the trainer's own
``model/`` is never touched (deepracer-for-cloud clones the model prefix for the same reason,
``scripts/evaluation/start.sh -c``).

One Batch array job, one child per (track, direction), each with its own params file
(``<id>/<leg>/evaluation_params.yaml``); results under ``<id>/<leg>/``: ``metrics.json``
(the simapp's EvalMetrics), ``evaluation-simtrace/`` and ``mp4/``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

EVALUATION_LAUNCH_FILE = "evaluation.launch.py"
PARAMS_NAME = "evaluation_params.yaml"
RECORD_NAME = "evaluation.json"
CHECKPOINTS_NAME = "model/deepracer_checkpoints.json"
METADATA_NAME = "model/model_metadata.json"
CHECKPOINT_NAME = re.compile(r"^(\d+)_Step-\d+\.ckpt$")
# Race settings the evaluation keeps from the run's own training params
# (the simapp reads the same keys in training and evaluation: markov/boto/s3/constants.py).
RACE_KEYS = (
    "NUMBER_OF_OBSTACLES",
    "MIN_DISTANCE_BETWEEN_OBSTACLES",
    "RANDOMIZE_OBSTACLE_LOCATIONS",
    "IS_OBSTACLE_BOT_CAR",
    "OBSTACLE_TYPE",
    "OBJECT_POSITIONS",
    "NUMBER_OF_BOT_CARS",
    "IS_LANE_CHANGE",
    "LOWER_LANE_CHANGE_TIME",
    "UPPER_LANE_CHANGE_TIME",
    "LANE_CHANGE_DISTANCE",
    "MIN_DISTANCE_BETWEEN_BOT_CARS",
    "RANDOMIZE_BOT_CAR_LOCATIONS",
    "BOT_CAR_SPEED",
    "PENALTY_SECONDS",
)
CAR_KEYS = ("CAR_COLOR", "BODY_SHELL_TYPE", "DISPLAY_NAME", "RACER_NAME")
RACE_TYPES = ("TIME_TRIAL", "OBJECT_AVOIDANCE", "HEAD_TO_BOT")
# One leg is a few laps; a stuck simulation must not run for the rollouts' whole day.
ATTEMPT_SECONDS = 2 * 3600
MAX_LEGS = 100
MAX_TRIALS = 100


class EvaluationError(ValueError):
    """The evaluation cannot be planned; the message says what and what is allowed."""


@dataclass(frozen=True)
class Settings:
    tracks: tuple[str, ...]
    both_directions: bool = False
    trials: int = 3
    checkpoint: str = "best"  # best | last | a checkpoint number
    race_type: str | None = None  # None: the run's own
    is_continuous: bool = False
    number_of_resets: int = 0
    off_track_penalty: float = 2.0
    collision_penalty: float = 5.0

    def problems(self) -> list[str]:
        found = []
        if not self.tracks:
            found.append("tracks: give at least one track")
        if len(self.legs()) > MAX_LEGS:
            found.append(f"tracks: {len(self.legs())} legs; allowed: at most {MAX_LEGS}")
        if not 1 <= self.trials <= MAX_TRIALS:
            found.append(f"trials: {self.trials}; allowed: 1 to {MAX_TRIALS}")
        if not (self.checkpoint in ("best", "last") or self.checkpoint.isdigit()):
            found.append(f"checkpoint: {self.checkpoint!r}; allowed: best, last or a number")
        if self.race_type is not None and self.race_type not in RACE_TYPES:
            found.append(f"race type: {self.race_type!r}; allowed: {', '.join(RACE_TYPES)}")
        # The simapp allows 0 (an off-track ends the trial) or at least 2 resets
        # (markov/evaluation_worker.py, MIN_RESET_COUNT).
        if self.number_of_resets == 1 or self.number_of_resets < 0:
            found.append(
                f"number of resets: {self.number_of_resets}; allowed: 0 or at least 2 (the simapp)"
            )
        for name in ("off_track_penalty", "collision_penalty"):
            if not 0 <= getattr(self, name) <= 60:
                found.append(f"{name.replace('_', ' ')}: {getattr(self, name)}; allowed: 0 to 60 s")
        return found

    def legs(self) -> list[Leg]:
        return [
            Leg(track, reverse)
            for track in self.tracks
            for reverse in ((False, True) if self.both_directions else (False,))
        ]


@dataclass(frozen=True)
class Leg:
    track: str
    reverse: bool

    @property
    def name(self) -> str:
        return f"{self.track}-reverse" if self.reverse else self.track


@dataclass(frozen=True)
class Target:
    """The run to evaluate and where its evaluation runs (the experiment's own queue)."""

    experiment: str
    run_id: str
    bucket: str
    run_prefix: str  # experiments/<name>/runs/<run id>
    region: str
    job_queue: str
    job_definition: str
    vcpus: int
    memory_mib: int
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    evaluation_id: str
    prefix: str  # <run prefix>/evaluations/<id>
    checkpoint: int
    checkpoint_name: str
    copies: tuple[tuple[str, str], ...]  # (source key, destination key) in the bucket
    objects: Mapping[str, str]  # key -> text
    submit: Mapping[str, Any]
    record: Mapping[str, Any]

    @property
    def record_key(self) -> str:
        return f"{self.prefix}/{RECORD_NAME}"


def evaluation_id(run_id: str, settings: Settings, salt: str) -> str:
    """Stable for one (run, settings, salt): the automatic evaluation of a run is always the
    same id, so a repeated event finds it already there."""
    digest = hashlib.sha256(
        json.dumps([run_id, asdict(settings), salt], sort_keys=True).encode()
    ).hexdigest()
    return f"eval-{digest[:8]}"


def chosen_checkpoint(
    settings: Settings, checkpoints_json: bytes | None, model_keys: Sequence[str], where: str
) -> tuple[int, str]:
    """The number and name of the checkpoint ``settings.checkpoint`` means in this run."""
    names = sorted(
        {
            key.rsplit("/", 1)[-1].split(".ckpt")[0] + ".ckpt"
            for key in model_keys
            if ".ckpt" in key.rsplit("/", 1)[-1]
            and CHECKPOINT_NAME.match(key.rsplit("/", 1)[-1].split(".ckpt")[0] + ".ckpt")
        },
        key=lambda n: int(n.split("_", 1)[0]),
    )
    by_number = {int(n.split("_", 1)[0]): n for n in names}
    kept = ", ".join(map(str, by_number)) or "none"
    if settings.checkpoint.isdigit():
        number = int(settings.checkpoint)
    else:
        if checkpoints_json is None:
            raise EvaluationError(
                f"{where}/{CHECKPOINTS_NAME} does not exist yet (rollout worker 0 writes it "
                f"after the first evaluation); give a checkpoint number (kept: {kept})"
            )
        try:
            name = json.loads(checkpoints_json)[f"{settings.checkpoint}_checkpoint"]["name"]
        except (ValueError, KeyError, TypeError):
            raise EvaluationError(
                f"{where}/{CHECKPOINTS_NAME}: no {settings.checkpoint}_checkpoint.name"
            ) from None
        match = CHECKPOINT_NAME.match(str(name))
        if not match:
            raise EvaluationError(f"{where}/{CHECKPOINTS_NAME}: {name!r} is not <N>_Step-<M>.ckpt")
        number = int(match.group(1))
    if number not in by_number:
        raise EvaluationError(
            f"{where}/model/: checkpoint {number} is not kept (the trainer keeps the last few "
            f"and the best; kept: {kept})"
        )
    return number, by_number[number]


def _text(value: Any) -> str:
    return ("True" if value else "False") if isinstance(value, bool) else str(value)


def params_yaml(values: Mapping[str, Any]) -> str:
    """The params as the simapp reads them: every scalar a string, lists of strings, as
    deepracer-for-cloud writes evaluation params (scripts/evaluation/prepare-config.py,
    default_style "'"); JSON strings and flow lists are YAML too."""
    lines = []
    for key, value in values.items():
        shown = [_text(v) for v in value] if isinstance(value, list) else _text(value)
        lines.append(f"{key}: {json.dumps(shown)}\n")
    return "".join(lines)


def flat_yaml(text: str) -> dict[str, Any]:
    """Read the flat training params this project renders (rollouts/render.py: one ``KEY: value``
    per line, single-quoted or plain scalars, block lists as ``- item`` lines). The Lambda
    runtime has no YAML library, and these files are ours."""
    values: dict[str, Any] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.lstrip().startswith("- ") and last is not None:
            items = values[last] if isinstance(values[last], list) else []
            items.append(_scalar(line.lstrip()[2:]))
            values[last] = items
            continue
        key, sep, raw = line.partition(":")
        if not sep or line[:1].isspace():
            continue
        last = key.strip()
        values[last] = _scalar(raw)
    return values


def _scalar(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1].replace("''", "'")
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return str(json.loads(raw))
    return raw


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def plan(
    target: Target,
    settings: Settings,
    *,
    evaluation_id: str,
    model_keys: Sequence[str],
    checkpoints_json: bytes | None,
    training_params: Mapping[str, Any],
) -> Plan:
    problems = settings.problems()
    if problems:
        raise EvaluationError("; ".join(problems))
    where = f"s3://{target.bucket}/{target.run_prefix}"
    number, name = chosen_checkpoint(settings, checkpoints_json, model_keys, where)
    trained_as = str(training_params.get("RACE_TYPE", "TIME_TRIAL"))
    race_type = settings.race_type or trained_as
    if race_type not in ("TIME_TRIAL", trained_as):
        raise EvaluationError(
            f"race type {race_type}: the run trained {trained_as}, so only {trained_as} or "
            "TIME_TRIAL can be evaluated (their settings come from the run's training params)"
        )
    prefix = f"{target.run_prefix}/evaluations/{evaluation_id}"
    copies = [
        (key, f"{prefix}/model/{key.rsplit('/', 1)[-1]}")
        for key in sorted(model_keys)
        if key.rsplit("/", 1)[-1].startswith(name)
    ]
    copies.append((f"{target.run_prefix}/{METADATA_NAME}", f"{prefix}/{METADATA_NAME}"))
    chosen = {"name": name}
    objects = {
        f"{prefix}/{CHECKPOINTS_NAME}": json.dumps(
            {"best_checkpoint": chosen, "last_checkpoint": chosen}, sort_keys=True
        )
    }
    legs = settings.legs()
    race = {k: training_params[k] for k in RACE_KEYS if k in training_params}
    car = {k: _as_list(training_params[k]) for k in CAR_KEYS if k in training_params}
    for leg in legs:
        out = f"{prefix}/{leg.name}"
        params = {
            "JOB_TYPE": "EVALUATION",
            "AWS_REGION": target.region,
            "MODEL_S3_BUCKET": [target.bucket],
            "MODEL_S3_PREFIX": [prefix],
            "MODEL_METADATA_FILE_S3_KEY": [f"{prefix}/{METADATA_NAME}"],
            "METRICS_S3_BUCKET": [target.bucket],
            "METRICS_S3_OBJECT_KEY": [f"{out}/metrics.json"],
            "SIMTRACE_S3_BUCKET": [target.bucket],
            "SIMTRACE_S3_PREFIX": [out],
            "MP4_S3_BUCKET": [target.bucket],
            "MP4_S3_OBJECT_PREFIX": [f"{out}/mp4"],
            "WORLD_NAME": leg.track,
            "REVERSE_DIR": leg.reverse,
            "RACE_TYPE": race_type,
            "EVAL_CHECKPOINT": "best",  # the copy names the chosen checkpoint best and last
            "NUMBER_OF_TRIALS": settings.trials,
            "IS_CONTINUOUS": settings.is_continuous,
            "NUMBER_OF_RESETS": settings.number_of_resets,
            "OFF_TRACK_PENALTY": settings.off_track_penalty,
            "COLLISION_PENALTY": settings.collision_penalty,
            "ENABLE_DOMAIN_RANDOMIZATION": False,
            "KINESIS_VIDEO_STREAM_NAME": "",
            **car,
            **(race if race_type == trained_as else {}),
        }
        objects[f"{out}/{PARAMS_NAME}"] = params_yaml(params)
    env = {
        "APP_REGION": target.region,
        "MODEL_S3_BUCKET": target.bucket,
        "MODEL_S3_PREFIX": prefix,
        "ENABLE_KINESIS": "false",
        "ROLLOUT_LAUNCH_FILE": EVALUATION_LAUNCH_FILE,
        "ROLLOUT_WORLD_NAMES": ",".join(leg.track for leg in legs),
        # Relative to MODEL_S3_PREFIX: the simapp joins the two.
        "ROLLOUT_YAML_NAMES": ",".join(f"{leg.name}/{PARAMS_NAME}" for leg in legs),
        "ROLLOUT_VIDEO_STREAMS": "",
    }
    job_name = f"{target.run_id}-{evaluation_id}"
    submit: dict[str, Any] = {
        "jobName": job_name,
        "jobQueue": target.job_queue,
        "jobDefinition": target.job_definition,
        "containerOverrides": {
            "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
            "resourceRequirements": [
                {"type": "VCPU", "value": str(target.vcpus)},
                {"type": "MEMORY", "value": str(target.memory_mib)},
            ],
        },
        "propagateTags": True,
        "timeout": {"attemptDurationSeconds": ATTEMPT_SECONDS},
        "tags": {**target.tags, "rollouts:experiment": target.experiment},
    }
    if len(legs) > 1:
        submit["arrayProperties"] = {"size": len(legs)}
    record = {
        "evaluationId": evaluation_id,
        "experiment": target.experiment,
        "runId": target.run_id,
        "checkpoint": number,
        "checkpointName": name,
        "legs": [
            {"index": i, "track": leg.track, "reverse": leg.reverse, "name": leg.name}
            for i, leg in enumerate(legs)
        ],
        "settings": asdict(settings),
        "jobName": job_name,
        "jobId": None,
        "status": "PLANNED",
    }
    return Plan(
        evaluation_id=evaluation_id,
        prefix=prefix,
        checkpoint=number,
        checkpoint_name=name,
        copies=tuple(copies),
        objects=objects,
        submit=submit,
        record=record,
    )
