"""Render an ``ExperimentSpec`` into the files the trainer and rollouts read.

Deploy-time values are left as ``{{placeholder}}`` text; the fan-out Lambda fills them
(``docs/fanout-contract.md``). ``render_files`` is deterministic: same spec, same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import yaml

from rollouts import contract
from rollouts.spec import ExperimentSpec

PLACEHOLDERS = ("bucket", "prefix", "region", "account", "training_job_arn", "video_stream")
MANIFEST_NAME = "manifest.json"


def placeholder(name: str) -> str:
    return "{{" + name + "}}"


def _flag(value: bool) -> str:
    # The simapp parses these with a case-insensitive "true" check; DRfC writes True/False.
    return "True" if value else "False"


def _number(value: float | int) -> str:
    return str(value)


def worker_params(spec: ExperimentSpec, index: int) -> dict[str, str]:
    """The training params of worker ``index`` (all values strings, as the simapp expects)."""
    bucket, prefix = placeholder("bucket"), placeholder("prefix")
    override = spec.override_for(index)
    training = spec.training

    def pick(value: bool | None, default: bool) -> bool:
        return default if value is None else value

    params: dict[str, str] = {
        "JOB_TYPE": "TRAINING",
        "WORLD_NAME": spec.worker_track(index),
        "RACE_TYPE": spec.race.type,
        "AWS_REGION": placeholder("region"),
        "SAGEMAKER_SHARED_S3_BUCKET": bucket,
        "SAGEMAKER_SHARED_S3_PREFIX": prefix,
        "METRICS_S3_BUCKET": bucket,
        "METRICS_S3_OBJECT_KEY": f"{prefix}/{contract.METRICS_KEY}",
        "MODEL_METADATA_FILE_S3_KEY": f"{prefix}/{contract.MODEL_METADATA_KEY}",
        "REWARD_FILE_S3_KEY": f"{prefix}/{contract.REWARD_FUNCTION_KEY}",
        "SIMTRACE_S3_BUCKET": bucket,
        # The simapp adds [<worker>/]training-simtrace/ itself (bundle/markov/rollout_worker.py,
        # simtrace_video.py); deepracer-for-cloud passes the bare model prefix too.
        "SIMTRACE_S3_PREFIX": prefix,
        "MP4_S3_BUCKET": bucket,
        "MP4_S3_OBJECT_PREFIX": f"{prefix}/{contract.MP4_PREFIX}",
        "KINESIS_VIDEO_STREAM_NAME": placeholder("video_stream"),
        "TRAINING_JOB_ARN": placeholder("training_job_arn"),
        "ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID": placeholder("account"),
        "NUM_WORKERS": str(spec.rollouts.count),
        # The main (chase) camera feeds video and MP4s; the simapp also renders a second camera
        # unless told not to (both default to True in bundle/markov/rollout_worker.py, read with
        # str2bool); deepracer-for-cloud renders CAMERA_SUB_ENABLE False as well.
        "CAMERA_MAIN_ENABLE": _flag(True),
        "CAMERA_SUB_ENABLE": _flag(False),
        "BODY_SHELL_TYPE": spec.car.shell,
        "CAR_COLOR": spec.car.color,
        "CAR_NAME": spec.car.name,
        "DISPLAY_NAME": spec.car.name,
        "RACER_NAME": spec.car.name,
        "MODEL_NAME": spec.name,
        "NUMBER_OF_EPISODES": "0",
        "TARGET_REWARD_SCORE": "None",
        "CHANGE_START_POSITION": _flag(
            pick(override.change_start_position, training.change_start_position)
        ),
        "ALTERNATE_DRIVING_DIRECTION": _flag(
            pick(override.alternate_driving_direction, training.alternate_driving_direction)
        ),
        "REVERSE_DIR": _flag(pick(override.reverse_direction, training.reverse_direction)),
        "START_POSITION_OFFSET": _number(training.start_position_offset),
        "ROUND_ROBIN_ADVANCE_DIST": _number(training.round_robin_advance_dist),
        "ENABLE_DOMAIN_RANDOMIZATION": _flag(training.enable_domain_randomization),
        "MIN_EVAL_TRIALS": str(training.min_eval_trials),
        "BEST_MODEL_METRIC": training.best_model_metric,
        "NUMBER_OF_RESETS": str(training.number_of_resets),
    }
    oa = spec.race.object_avoidance
    if oa is not None:
        params |= {
            "NUMBER_OF_OBSTACLES": str(oa.number_of_obstacles),
            "MIN_DISTANCE_BETWEEN_OBSTACLES": _number(oa.min_distance_between_obstacles),
            "RANDOMIZE_OBSTACLE_LOCATIONS": _flag(oa.randomize_obstacle_locations),
            "IS_OBSTACLE_BOT_CAR": _flag(oa.is_obstacle_bot_car),
            "OBSTACLE_TYPE": oa.obstacle_type,
        }
    h2b = spec.race.head_to_bot
    if h2b is not None:
        params |= {
            "NUMBER_OF_BOT_CARS": str(h2b.number_of_bot_cars),
            "IS_LANE_CHANGE": _flag(h2b.is_lane_change),
            "LOWER_LANE_CHANGE_TIME": _number(h2b.lower_lane_change_time),
            "UPPER_LANE_CHANGE_TIME": _number(h2b.upper_lane_change_time),
            "LANE_CHANGE_DISTANCE": _number(h2b.lane_change_distance),
            "MIN_DISTANCE_BETWEEN_BOT_CARS": _number(h2b.min_distance_between_bot_cars),
            "RANDOMIZE_BOT_CAR_LOCATIONS": _flag(h2b.randomize_bot_car_locations),
            "BOT_CAR_SPEED": _number(h2b.bot_car_speed),
            "PENALTY_SECONDS": _number(h2b.penalty_seconds),
        }
    return params


def to_yaml(params: Mapping[str, object]) -> str:
    """YAML text with sorted keys; ``OBJECT_POSITIONS`` is the one list-valued key."""
    return yaml.safe_dump(dict(params), sort_keys=True, default_flow_style=False, width=1000)


def worker_yaml(spec: ExperimentSpec, index: int) -> str:
    params: dict[str, object] = dict(worker_params(spec, index))
    oa = spec.race.object_avoidance
    if oa is not None and oa.object_positions:
        params["OBJECT_POSITIONS"] = list(oa.object_positions)
    return to_yaml(params)


def manifest() -> dict[str, object]:
    """Where each bundled file goes, relative to the experiment prefix."""
    return {
        "files": [
            {"source": "reward_function.py", "key": contract.REWARD_FUNCTION_KEY},
            {"source": "model_metadata.json", "key": contract.MODEL_METADATA_KEY},
            {"source": "hyperparameters.json", "key": contract.HYPERPARAMETERS_KEY},
        ],
        "hyperparameters": "hyperparameters.json",
        "model_metadata_key": contract.MODEL_METADATA_KEY,
        "reward_function_key": contract.REWARD_FUNCTION_KEY,
    }


def render_files(spec: ExperimentSpec) -> dict[str, str]:
    """Every file of the experiment's bundle, by name (the fan-out Lambda's input)."""
    files: dict[str, str] = {}
    names = []
    for index in range(spec.rollouts.count):
        name = contract.worker_params_name(index)
        files[name] = worker_yaml(spec, index)
        names.append(name)
    files["reward_function.py"] = spec.reward_function
    files["model_metadata.json"] = json.dumps(dict(spec.model_metadata), indent=2, sort_keys=True)
    files["hyperparameters.json"] = json.dumps(dict(spec.hyperparameters), indent=2, sort_keys=True)
    files[MANIFEST_NAME] = json.dumps(
        {"worker_params": names, **manifest()}, indent=2, sort_keys=True
    )
    return files


def write_bundle(spec: ExperimentSpec, directory: Path) -> Path:
    """Write the bundle into ``directory`` (created or emptied); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    files = render_files(spec)
    for stale in directory.iterdir():
        if stale.is_file() and stale.name not in files:
            stale.unlink()
    for name, text in sorted(files.items()):
        target = directory / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    return directory


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace placeholders (used by ``rollouts render`` for a preview with real values).

    Every placeholder starts a single-quoted YAML scalar, so a value may not contain a quote or
    a line break (none of the real values - bucket, prefix, region, ARNs, stream names - can).
    """
    for name, value in values.items():
        if any(c in value for c in "'\n\r"):
            raise ValueError(f"{name}: {value!r} contains a quote or line break")
    for name in PLACEHOLDERS:
        if name in values:
            text = text.replace(placeholder(name), values[name])
    return text
