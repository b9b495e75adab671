"""The training params the synthesized asset holds: every key the simapp contract lists for the
race type, each with its value (asset hashes are masked in snapshots, so only this notices a key
that vanished from the bundle). Keys and values are stated here from the contract
(../shared/reference/simapp-contract.md) and the experiment files, not taken from the code."""

from __future__ import annotations

import json
import zipfile
from typing import Any

import pytest
import yaml
from synth_support import Synthesis

# simapp-contract.md, "training_params.yaml": mandatory and common keys.
MANDATORY = [
    "SAGEMAKER_SHARED_S3_BUCKET",
    "SAGEMAKER_SHARED_S3_PREFIX",
    "METRICS_S3_BUCKET",
    "METRICS_S3_OBJECT_KEY",
    "MODEL_METADATA_FILE_S3_KEY",
    "BODY_SHELL_TYPE",
    "CAR_COLOR",
]
COMMON = [
    "JOB_TYPE", "WORLD_NAME", "RACE_TYPE", "AWS_REGION", "KINESIS_VIDEO_STREAM_NAME",
    "REWARD_FILE_S3_KEY", "SIMTRACE_S3_BUCKET", "SIMTRACE_S3_PREFIX", "NUM_WORKERS",
    "TRAINING_JOB_ARN", "ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID", "TARGET_REWARD_SCORE",
    "NUMBER_OF_EPISODES", "CHANGE_START_POSITION", "ALTERNATE_DRIVING_DIRECTION", "REVERSE_DIR",
    "START_POSITION_OFFSET", "ROUND_ROBIN_ADVANCE_DIST", "NUMBER_OF_RESETS",
    "ENABLE_DOMAIN_RANDOMIZATION", "MIN_EVAL_TRIALS", "BEST_MODEL_METRIC", "CAR_NAME",
    "DISPLAY_NAME", "RACER_NAME", "MODEL_NAME", "MP4_S3_BUCKET", "MP4_S3_OBJECT_PREFIX",
]  # fmt: skip
# Listed by the contract but deliberately not rendered: the track name already carries the
# direction (_cw/_ccw; the simapp would append it again), and the video job type is for races
# between models, not training.
NOT_RENDERED = {"TRACK_DIRECTION_CLOCKWISE", "VIDEO_JOB_TYPE"}
OBJECT_AVOIDANCE = [
    "NUMBER_OF_OBSTACLES", "MIN_DISTANCE_BETWEEN_OBSTACLES", "RANDOMIZE_OBSTACLE_LOCATIONS",
    "IS_OBSTACLE_BOT_CAR", "OBSTACLE_TYPE",
]  # fmt: skip
HEAD_TO_BOT = [
    "NUMBER_OF_BOT_CARS", "IS_LANE_CHANGE", "LOWER_LANE_CHANGE_TIME", "UPPER_LANE_CHANGE_TIME",
    "LANE_CHANGE_DISTANCE", "MIN_DISTANCE_BETWEEN_BOT_CARS", "RANDOMIZE_BOT_CAR_LOCATIONS",
    "BOT_CAR_SPEED", "PENALTY_SECONDS",
]  # fmt: skip

# What every file holds whatever the experiment (deploy-time values stay placeholders).
SHARED_VALUES = {
    "JOB_TYPE": "TRAINING",
    "AWS_REGION": "{{region}}",
    "SAGEMAKER_SHARED_S3_BUCKET": "{{bucket}}",
    "SAGEMAKER_SHARED_S3_PREFIX": "{{prefix}}",
    "METRICS_S3_BUCKET": "{{bucket}}",
    "METRICS_S3_OBJECT_KEY": "{{prefix}}/metrics/TrainingMetrics.json",
    "MODEL_METADATA_FILE_S3_KEY": "{{prefix}}/model/model_metadata.json",
    "REWARD_FILE_S3_KEY": "{{prefix}}/reward_function.py",
    "SIMTRACE_S3_BUCKET": "{{bucket}}",
    "SIMTRACE_S3_PREFIX": "{{prefix}}",
    "MP4_S3_BUCKET": "{{bucket}}",
    "MP4_S3_OBJECT_PREFIX": "{{prefix}}/mp4",
    "KINESIS_VIDEO_STREAM_NAME": "{{video_stream}}",
    "TRAINING_JOB_ARN": "{{training_job_arn}}",
    "ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID": "{{account}}",
    "BODY_SHELL_TYPE": "deepracer",
    "CAMERA_MAIN_ENABLE": "True",
    "CAMERA_SUB_ENABLE": "False",
    "TARGET_REWARD_SCORE": "None",
    "NUMBER_OF_EPISODES": "0",
    "CHANGE_START_POSITION": "True",
    "ALTERNATE_DRIVING_DIRECTION": "False",
    "START_POSITION_OFFSET": "0.0",
    "ROUND_ROBIN_ADVANCE_DIST": "0.05",
    "NUMBER_OF_RESETS": "0",
    "ENABLE_DOMAIN_RANDOMIZATION": "False",
    "MIN_EVAL_TRIALS": "5",
    "BEST_MODEL_METRIC": "progress",
}
# Per experiment file (experiments/*.yaml) and worker: what its file says, or the defaults.
EXPECTED: dict[str, dict[str, Any]] = {
    "reinvent-time-trial": {
        "race_keys": [],
        "workers": 4,
        "values": {
            "RACE_TYPE": "TIME_TRIAL", "WORLD_NAME": "reInvent2019_track", "NUM_WORKERS": "4",
            "CAR_COLOR": "Red", "CAR_NAME": "FastCar", "DISPLAY_NAME": "FastCar",
            "RACER_NAME": "FastCar", "MODEL_NAME": "reinvent-time-trial", "REVERSE_DIR": "False",
        },
    },
    "oa-multi-track": {
        "race_keys": OBJECT_AVOIDANCE,
        "workers": 3,
        "values": {
            "RACE_TYPE": "OBJECT_AVOIDANCE", "NUM_WORKERS": "3", "CAR_COLOR": "Blue",
            "CAR_NAME": "Dodger", "MODEL_NAME": "oa-multi-track", "NUMBER_OF_OBSTACLES": "3",
            "RANDOMIZE_OBSTACLE_LOCATIONS": "True", "IS_OBSTACLE_BOT_CAR": "False",
            "MIN_DISTANCE_BETWEEN_OBSTACLES": "2.0", "OBSTACLE_TYPE": "box_obstacle",
        },
        "per_worker": {
            0: {"WORLD_NAME": "reInvent2019_track", "REVERSE_DIR": "False"},
            1: {"WORLD_NAME": "2022_april_open", "REVERSE_DIR": "False"},
            2: {"WORLD_NAME": "reInvent2019_wide", "REVERSE_DIR": "True"},
        },
    },
    "h2b-continuous": {
        "race_keys": HEAD_TO_BOT,
        "workers": 2,
        "values": {
            "RACE_TYPE": "HEAD_TO_BOT", "WORLD_NAME": "reInvent2019_wide", "NUM_WORKERS": "2",
            "CAR_COLOR": "Black", "CAR_NAME": "DeepRacer", "MODEL_NAME": "h2b-continuous",
            "NUMBER_OF_BOT_CARS": "2", "IS_LANE_CHANGE": "True", "BOT_CAR_SPEED": "0.3",
            "LOWER_LANE_CHANGE_TIME": "3.0", "UPPER_LANE_CHANGE_TIME": "5.0",
            "LANE_CHANGE_DISTANCE": "1.0", "MIN_DISTANCE_BETWEEN_BOT_CARS": "2.0",
            "RANDOMIZE_BOT_CAR_LOCATIONS": "False", "PENALTY_SECONDS": "2.0",
            "REVERSE_DIR": "False",
        },
    },
}  # fmt: skip


def asset_files(synthesis: Synthesis, experiment: str) -> dict[str, str]:
    """The files of the experiment's bundle asset, as `cdk deploy` would upload them."""
    stack = f"DeepRacerRollouts-{experiment}"
    manifest = json.loads((synthesis.outdir / f"{stack}.assets.json").read_text())
    [run] = [
        r for r in synthesis.templates[stack]["Resources"].values()
        if r["Type"] == "Custom::RolloutsRun"
    ]  # fmt: skip
    key = run["Properties"]["FilesKey"]
    [entry] = [
        f for f in manifest["files"].values()
        if any(d["objectKey"] == key for d in f["destinations"].values())
    ]  # fmt: skip
    staged = synthesis.outdir / entry["source"]["path"]
    if staged.is_dir():
        return {p.name: p.read_text() for p in staged.iterdir()}
    with zipfile.ZipFile(staged) as archive:
        return {n: archive.read(n).decode() for n in archive.namelist()}


@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_every_contract_key_with_its_value(experiment: str, batch: Synthesis) -> None:
    expected = EXPECTED[experiment]
    files = asset_files(batch, experiment)
    for worker in range(expected["workers"]):
        params = yaml.safe_load(files[f"training_params_{worker}.yaml"])
        wanted = [*MANDATORY, *COMMON, *expected["race_keys"]]
        assert not NOT_RENDERED & set(wanted)
        missing = [k for k in wanted if k not in params]
        assert missing == [], f"worker {worker} lacks {missing}"
        values = {
            **SHARED_VALUES,
            **expected["values"],
            **expected.get("per_worker", {}).get(worker, {}),
        }
        for key, value in values.items():
            assert params[key] == value, (worker, key)
        # Nothing beyond what is listed above: a key added by mistake is noticed too.
        listed = set(wanted) | set(values) | {"OBJECT_POSITIONS"}
        assert set(params) <= listed, set(params) - listed
        others = {*OBJECT_AVOIDANCE, *HEAD_TO_BOT} - set(expected["race_keys"])
        assert not others & set(params), "keys of another race type"
