"""Rendering: every worker's training params satisfy the simapp contract, for each race type,
with the real deepracer-for-cloud files as input."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from rollouts import contract
from rollouts.render import PLACEHOLDERS, placeholder, render_files, worker_params
from rollouts.spec import ExperimentSpec, load_experiment, load_variants

DRFC = (
    Path(
        os.environ.get(
            "ROLLOUTS_FIXTURES", Path(__file__).resolve().parents[3] / "shared" / "fixtures"
        )
    )
    / "drfc"
)

RACES = {
    "TIME_TRIAL": "race: {type: TIME_TRIAL}",
    "OBJECT_AVOIDANCE": (
        "race:\n  type: OBJECT_AVOIDANCE\n  object_avoidance:\n"
        "    object_positions: ['0.2,-1', '0.5,1', '0.8,-1']\n"
        "    is_obstacle_bot_car: true"
    ),
    "HEAD_TO_BOT": (
        "race:\n  type: HEAD_TO_BOT\n  head_to_bot:\n    number_of_bot_cars: 2\n"
        "    bot_car_speed: 0.4\n    is_lane_change: true"
    ),
}


def write_experiment(
    tmp_path: Path, race: str, metadata: str = "model_metadata.json", extra: str = ""
) -> Path:
    (tmp_path / "reward.py").write_text("def reward_function(params):\n    return 1.0\n")
    path = tmp_path / "experiment.yaml"
    path.write_text(
        f"name: render-test\ntrack: reInvent2019_wide_cw\n{race}\n"
        f"model_metadata: {DRFC / metadata}\nhyperparameters: {DRFC / 'hyperparameters.json'}\n"
        f"reward_function: reward.py\ncar: {{name: Speedy, color: Orange}}\n"
        f"rollouts:\n  count: 3\n{extra}"
    )
    return path


@pytest.mark.parametrize("race_type", sorted(RACES))
def test_every_mandatory_key_with_the_right_values(race_type: str, tmp_path: Path) -> None:
    spec = load_experiment(write_experiment(tmp_path, RACES[race_type]))
    files = render_files(spec)
    for index in range(3):
        params = yaml.safe_load(files[f"training_params_{index}.yaml"])
        for key in contract.MANDATORY_TRAINING_KEYS:
            assert key in params, key
        assert all(isinstance(v, str) for k, v in params.items() if k != "OBJECT_POSITIONS")
        assert params["RACE_TYPE"] == race_type
        assert params["WORLD_NAME"] == "reInvent2019_wide_cw"
        assert params["JOB_TYPE"] == "TRAINING"
        assert params["SAGEMAKER_SHARED_S3_BUCKET"] == "{{bucket}}"
        assert params["SAGEMAKER_SHARED_S3_PREFIX"] == "{{prefix}}"
        assert params["METRICS_S3_OBJECT_KEY"] == "{{prefix}}/metrics/TrainingMetrics.json"
        assert params["MODEL_METADATA_FILE_S3_KEY"] == "{{prefix}}/model/model_metadata.json"
        assert params["REWARD_FILE_S3_KEY"] == "{{prefix}}/reward_function.py"
        assert params["CAR_COLOR"] == "Orange" and params["BODY_SHELL_TYPE"] == "deepracer"
        assert params["CAR_NAME"] == "Speedy" and params["NUM_WORKERS"] == "3"
        assert params["KINESIS_VIDEO_STREAM_NAME"] == "{{video_stream}}"
    race_keys = {
        "OBJECT_AVOIDANCE": contract.OBJECT_AVOIDANCE_KEYS,
        "HEAD_TO_BOT": contract.HEAD_TO_BOT_KEYS,
    }
    params = yaml.safe_load(files["training_params_0.yaml"])
    for other, keys in race_keys.items():
        for key in keys:
            assert (key in params) == (other == race_type), key
    if race_type == "OBJECT_AVOIDANCE":
        assert params["OBJECT_POSITIONS"] == ["0.2,-1", "0.5,1", "0.8,-1"]
        assert params["NUMBER_OF_OBSTACLES"] == "3"
        assert params["IS_OBSTACLE_BOT_CAR"] == "True"
    if race_type == "HEAD_TO_BOT":
        assert params["NUMBER_OF_BOT_CARS"] == "2" and params["BOT_CAR_SPEED"] == "0.4"
        assert params["IS_LANE_CHANGE"] == "True"


@pytest.mark.parametrize(
    "metadata", ["model_metadata.json", "model_metadata_cont.json", "model_metadata_sac.json"]
)
def test_real_drfc_files_load_and_render_unchanged(metadata: str, tmp_path: Path) -> None:
    spec = load_experiment(write_experiment(tmp_path, RACES["TIME_TRIAL"], metadata))
    source = json.loads((DRFC / metadata).read_text())
    rendered = json.loads(render_files(spec)["model_metadata.json"])
    assert rendered["action_space"] == source["action_space"]
    assert rendered["training_algorithm"] == source["training_algorithm"]
    assert rendered["version"] == str(source["version"])
    hyperparameters = json.loads(render_files(spec)["hyperparameters.json"])
    assert hyperparameters == json.loads((DRFC / "hyperparameters.json").read_text())


def test_worker_overrides_change_only_that_worker(tmp_path: Path) -> None:
    extra = "  overrides:\n    - {worker: 2, track: 2022_april_open, reverse_direction: true}\n"
    spec = load_experiment(write_experiment(tmp_path, RACES["TIME_TRIAL"], extra=extra))
    first, second, third = (worker_params(spec, i) for i in range(3))
    assert first == second
    assert third["WORLD_NAME"] == "2022_april_open" and third["REVERSE_DIR"] == "True"
    assert {k for k in first if first[k] != third[k]} == {"WORLD_NAME", "REVERSE_DIR"}


def test_only_known_placeholders_and_deterministic_output(tmp_path: Path) -> None:
    spec: ExperimentSpec = load_experiment(write_experiment(tmp_path, RACES["HEAD_TO_BOT"]))
    files = render_files(spec)
    assert files == render_files(spec)
    text = "".join(files.values())
    used = set(re.findall(r"\{\{(\w+)\}\}", text))
    assert used == set(PLACEHOLDERS)
    assert placeholder("bucket") == "{{bucket}}"
    manifest = json.loads(files["manifest.json"])
    assert manifest["worker_params"] == [f"training_params_{i}.yaml" for i in range(3)]
    assert {f["key"] for f in manifest["files"]} == {
        contract.REWARD_FUNCTION_KEY,
        contract.MODEL_METADATA_KEY,
        contract.HYPERPARAMETERS_KEY,
    }


def test_shipped_experiments_are_valid() -> None:
    experiments = Path(__file__).resolve().parents[2] / "experiments"
    names = [s.name for p in sorted(experiments.glob("*.yaml")) for s in load_variants(p)]
    assert len(names) == len(set(names)) >= 3


def test_cameras_and_simtrace_prefix_as_the_simapp_reads_them(tmp_path: Path) -> None:
    """Only the main camera renders (the simapp defaults both to True), and the simtrace prefix
    is the run's own: the simapp appends [<worker>/]training-simtrace/ itself."""
    spec = load_experiment(write_experiment(tmp_path, RACES["TIME_TRIAL"]))
    params = yaml.safe_load(render_files(spec)["training_params_1.yaml"])
    assert params["CAMERA_MAIN_ENABLE"] == "True"
    assert params["CAMERA_SUB_ENABLE"] == "False"
    assert params["SIMTRACE_S3_PREFIX"] == "{{prefix}}"
    assert params["MP4_S3_OBJECT_PREFIX"] == "{{prefix}}/mp4"


def test_the_smoke_experiment_is_as_small_as_the_readme_says() -> None:
    """README "Check your platform": 2 workers, a few episodes per iteration, a 15-minute cap,
    video off."""
    spec = load_experiment(Path(__file__).resolve().parents[2] / "experiments" / "smoke.yaml")
    assert spec.name == "smoke"
    assert spec.rollouts.count == 2
    assert spec.episodes_per_iteration == 4
    assert spec.trainer.max_run_minutes == 15
    assert spec.video is False
