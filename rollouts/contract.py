"""The DeepRacer simulation application's interface, as this project relies on it.

Facts about the public simapp (community image 6.x), the DeepRacer 400-level workshop and
deepracer-for-cloud: valid values, mandatory training-params keys, the S3 layout under one
experiment prefix. One copy of each list lives here; the rest of the project imports it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

RACE_TYPES = ("TIME_TRIAL", "OBJECT_AVOIDANCE", "HEAD_TO_BOT")
CAR_COLORS = ("Black", "Grey", "Blue", "Red", "Orange", "White", "Purple")
BODY_SHELL_TYPES = ("deepracer",)
OBSTACLE_TYPES = ("box_obstacle",)
BEST_MODEL_METRICS = ("progress", "reward", "laptime")

# training_params.yaml keys the simapp refuses to start without.
MANDATORY_TRAINING_KEYS = (
    "SAGEMAKER_SHARED_S3_BUCKET",
    "SAGEMAKER_SHARED_S3_PREFIX",
    "METRICS_S3_BUCKET",
    "METRICS_S3_OBJECT_KEY",
    "MODEL_METADATA_FILE_S3_KEY",
    "BODY_SHELL_TYPE",
    "CAR_COLOR",
)
OBJECT_AVOIDANCE_KEYS = (
    "NUMBER_OF_OBSTACLES",
    "MIN_DISTANCE_BETWEEN_OBSTACLES",
    "RANDOMIZE_OBSTACLE_LOCATIONS",
    "IS_OBSTACLE_BOT_CAR",
    "OBSTACLE_TYPE",
)
HEAD_TO_BOT_KEYS = (
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

# model_metadata.json
ACTION_SPACE_TYPES = ("discrete", "continuous")
CAMERA_SENSORS = ("FRONT_FACING_CAMERA", "LEFT_CAMERA", "STEREO_CAMERAS")
LIDAR_SENSORS = ("LIDAR", "SECTOR_LIDAR")
NEURAL_NETWORKS = (
    "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW",
    "DEEP_CONVOLUTIONAL_NETWORK",
    "DEEP_CONVOLUTIONAL_NETWORK_DEEP",
)
TRAINING_ALGORITHMS = ("clipped_ppo", "sac")
MAX_STEERING_ANGLE = 30.0
MAX_SPEED = 4.0

# Hyperparameters the trainer understands, with deepracer-for-cloud's defaults.
DEFAULT_HYPERPARAMETERS: dict[str, float | int | str] = {
    "batch_size": 64,
    "beta_entropy": 0.01,
    "discount_factor": 0.999,
    "e_greedy_value": 0.05,
    "epsilon_steps": 10000,
    "exploration_type": "categorical",
    "loss_type": "huber",
    "lr": 0.0003,
    "num_episodes_between_training": 20,
    "num_epochs": 10,
    "stack_size": 1,
    "term_cond_avg_score": 350.0,
    "term_cond_max_episodes": 1000,
    "sac_alpha": 0.2,
}
EXPLORATION_TYPES = ("categorical", "e-greedy")
LOSS_TYPES = ("huber", "mean squared error")
BATCH_SIZES = (32, 64, 128, 256, 512)

# S3 layout under one experiment prefix (keys relative to the prefix).
REWARD_FUNCTION_KEY = "reward_function.py"
MODEL_METADATA_KEY = "model/model_metadata.json"
HYPERPARAMETERS_KEY = "hyperparameters.json"
METRICS_KEY = "metrics/TrainingMetrics.json"
SIMTRACE_PREFIX = "training-simtrace"
MP4_PREFIX = "mp4"
IP_PREFIX = "ip/"
SHARED_PARAMS_NAME = "training_params.yaml"


def worker_params_name(index: int) -> str:
    """Key (relative to the prefix) of worker ``index``'s params when workers differ."""
    return f"training_params_{index}.yaml"


@cache
def world_names() -> tuple[str, ...]:
    """The track names the simapp can load (127 in simapp 6.x)."""
    text = resources.files("rollouts").joinpath("data/worlds.txt").read_text(encoding="utf-8")
    return tuple(sorted(line.strip() for line in text.splitlines() if line.strip()))
