"""The experiment file, declared once as pydantic models: every key, its type, default, range,
choices and pattern.

Two things come from these models: the field rules ``rollouts.spec`` validates with (its reader
takes each field's default, bounds, choices and pattern from here, and keeps its own messages:
file, field, value, what is allowed, did you mean, every problem at once) and the JSON Schema
(2020-12) that ``rollouts schema`` prints and editors use through the ``yaml-language-server``
comment at the top of each experiment file. What a schema cannot say (files to read, a reward
function that must parse, rules across fields) is checked in ``rollouts.spec``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from rollouts import contract

MAX_ROLLOUTS = 64
ON_FAILURE = ("restart", "stop", "ignore")
NAME = r"^[a-z][a-z0-9-]{0,39}$"
TRAINER_INSTANCE = r"^ml\.[a-z][a-z0-9]*\.(?:[0-9]+)?x?large$"
PRETRAINED_PREFIX = r"^experiments/[a-z][a-z0-9-]{0,39}$"
RUN_REF = r"^(latest|[a-z][a-z0-9-]{0,39}-[0-9a-f]{8})$"
CAR_NAME = r"^[A-Za-z0-9_-]{1,32}$"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def choice(default: Any, choices: tuple[str, ...], description: str = "") -> Any:
    """A string field limited to ``choices`` (``enum`` in the schema)."""
    return Field(
        default, description=description or None, json_schema_extra={"enum": list(choices)}
    )


def text(default: Any, pattern: str, allowed: str, description: str = "") -> Any:
    """A string field matching ``pattern``; ``allowed`` is what the error message says."""
    return Field(
        default,
        pattern=pattern,
        description=description or allowed,
        json_schema_extra={"allowed": allowed},
    )


def bounded(default: Any, low: float, high: float, description: str = "", why: str = "") -> Any:
    extra: JsonDict | None = {"why": why} if why else None
    return Field(default, ge=low, le=high, description=description or None, json_schema_extra=extra)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ObjectAvoidance(_Section):
    number_of_obstacles: int = bounded(3, 1, 10, "obstacles on the track")
    min_distance_between_obstacles: float = bounded(2.0, 0.5, 10)
    randomize_obstacle_locations: bool = False
    is_obstacle_bot_car: bool = False
    obstacle_type: str = choice("box_obstacle", contract.OBSTACLE_TYPES)
    object_positions: list[str] | None = Field(
        None,
        description='"progress,lane" per obstacle: progress 0..1 of the lap, lane 1 inner or -1 outer',
    )


class HeadToBot(_Section):
    number_of_bot_cars: int = bounded(3, 1, 6)
    is_lane_change: bool = False
    lower_lane_change_time: float = bounded(3.0, 0.5, 60)
    upper_lane_change_time: float = bounded(5.0, 0.5, 60)
    lane_change_distance: float = bounded(1.0, 0.1, 5)
    min_distance_between_bot_cars: float = bounded(2.0, 0.5, 10)
    randomize_bot_car_locations: bool = False
    bot_car_speed: float = bounded(0.2, 0.1, 4)
    penalty_seconds: float = bounded(2.0, 0, 60)


class Race(_Section):
    type: str = choice("TIME_TRIAL", contract.RACE_TYPES)
    object_avoidance: ObjectAvoidance | None = None
    head_to_bot: HeadToBot | None = None


class Car(_Section):
    name: str = text("DeepRacer", CAR_NAME, "1-32 letters, digits, '_' or '-'")
    color: str = choice("Black", contract.CAR_COLORS)
    shell: str = choice("deepracer", contract.BODY_SHELL_TYPES)


class Training(_Section):
    change_start_position: bool = True
    alternate_driving_direction: bool = False
    reverse_direction: bool = False
    start_position_offset: float = bounded(0.0, 0, 1)
    round_robin_advance_dist: float = bounded(0.05, 0, 1)
    enable_domain_randomization: bool = False
    min_eval_trials: int = bounded(5, 1, 100)
    best_model_metric: str = choice("progress", contract.BEST_MODEL_METRICS)
    number_of_resets: int = bounded(0, 0, 1000)


class WorkerOverride(_Section):
    worker: int = Field(ge=0, description="a worker index below rollouts.count")
    track: str | None = None
    reverse_direction: bool | None = None
    change_start_position: bool | None = None
    alternate_driving_direction: bool | None = None


class Rollouts(_Section):
    count: int = bounded(
        1,
        1,
        MAX_ROLLOUTS,
        "rollout workers",
        why=" (workers share one trainer's Redis; more rarely helps)",
    )
    vcpus: int = bounded(4, 1, 96, "vCPUs of each rollout (batch: a Fargate size, 1 2 4 8 16)")
    memory_mib: int = bounded(8192, 2048, 393216, "memory of each rollout")
    overrides: list[WorkerOverride] | None = None
    # The run supervisor's rules (README.md, "The run supervisor"; batch backend).
    on_failure: str = choice(
        "restart",
        ON_FAILURE,
        "when a rollout failed after Batch's retries: restart that worker, stop the whole run, "
        "or ignore it (the trainer then waits for it until its time limit)",
    )
    max_restarts: int = bounded(
        3,
        0,
        10,
        "restarts of one worker before on_failure 'restart' stops the run",
    )
    stall_minutes: int = bounded(
        30,
        0,
        1440,
        "stop the run when no worker records a new episode for this long while the trainer "
        "trains (0: never)",
    )


class Trainer(_Section):
    instance_type: str = text(
        "ml.c5.2xlarge",
        TRAINER_INSTANCE,
        "a SageMaker training instance type such as ml.c5.2xlarge or ml.g4dn.xlarge",
    )
    max_run_minutes: int = bounded(120, 10, 7200, why=" (SageMaker stops the trainer after this)")
    volume_gb: int = bounded(30, 10, 1024)


class Pretrained(_Section):
    prefix: str | None = text(
        None,
        PRETRAINED_PREFIX,
        "the prefix of an earlier experiment in the platform bucket, experiments/<name> (the "
        "trainer may read nothing else; copy a model from elsewhere there first)",
    )
    experiment: str | None = text(
        None, NAME, "an experiment name (lowercase letters, digits, '-'; default: this experiment)"
    )
    run: str = text(
        "latest",
        RUN_REF,
        "latest, or a run id such as reinvent-time-trial-1a2b3c4d (rollouts status shows them)",
    )
    checkpoint: str = choice("last", ("last", "best"))


class Evaluation(_Section):
    tracks: list[str] | None = Field(
        None, description="simapp worlds (default: the experiment's track)"
    )
    directions: str = choice("forward", ("forward", "both"))
    trials: int = bounded(3, 1, 100)
    checkpoint: str | int = Field("best", description="best, last or a checkpoint number")
    continuous: bool = False
    resets: int = bounded(0, 0, 10000, why=" (0: an off-track ends the trial; else at least 2)")
    off_track_penalty: float = bounded(2.0, 0, 60)
    collision_penalty: float = bounded(5.0, 0, 60)


class Hyperparameters(_Section):
    batch_size: int = bounded(contract.DEFAULT_HYPERPARAMETERS["batch_size"], 32, 512)
    beta_entropy: float = bounded(contract.DEFAULT_HYPERPARAMETERS["beta_entropy"], 0, 1)
    discount_factor: float = bounded(contract.DEFAULT_HYPERPARAMETERS["discount_factor"], 0, 1)
    e_greedy_value: float = bounded(contract.DEFAULT_HYPERPARAMETERS["e_greedy_value"], 0, 1)
    epsilon_steps: int = bounded(contract.DEFAULT_HYPERPARAMETERS["epsilon_steps"], 1, 10_000_000)
    exploration_type: str = choice(
        contract.DEFAULT_HYPERPARAMETERS["exploration_type"], contract.EXPLORATION_TYPES
    )
    loss_type: str = choice(contract.DEFAULT_HYPERPARAMETERS["loss_type"], contract.LOSS_TYPES)
    lr: float = bounded(contract.DEFAULT_HYPERPARAMETERS["lr"], 1e-8, 1e-2)
    num_episodes_between_training: int = bounded(
        contract.DEFAULT_HYPERPARAMETERS["num_episodes_between_training"], 1, 1000
    )
    num_epochs: int = bounded(contract.DEFAULT_HYPERPARAMETERS["num_epochs"], 1, 100)
    stack_size: int = bounded(contract.DEFAULT_HYPERPARAMETERS["stack_size"], 1, 10)
    term_cond_avg_score: float = bounded(
        contract.DEFAULT_HYPERPARAMETERS["term_cond_avg_score"], 0, 1e6
    )
    term_cond_max_episodes: int = bounded(
        contract.DEFAULT_HYPERPARAMETERS["term_cond_max_episodes"], 1, 10_000_000
    )
    sac_alpha: float = bounded(contract.DEFAULT_HYPERPARAMETERS["sac_alpha"], 0, 1)


class ModelMetadata(BaseModel):
    """model_metadata.json as the simapp reads it (a few extra keys pass through)."""

    model_config = ConfigDict(extra="forbid")
    action_space_type: str = choice(..., contract.ACTION_SPACE_TYPES)
    action_space: list[dict[str, float]] | dict[str, dict[str, float]] = Field(
        description="discrete: a list of {steering_angle, speed}; continuous: "
        "{steering_angle: {low, high}, speed: {low, high}}"
    )
    sensor: list[str] = Field(description="one camera and at most one lidar")
    neural_network: str = choice("DEEP_CONVOLUTIONAL_NETWORK_SHALLOW", contract.NEURAL_NETWORKS)
    training_algorithm: str = choice("clipped_ppo", contract.TRAINING_ALGORITHMS)
    version: str | int | None = None
    preprocess_type: Any = None
    regional_parameters: Any = None
    lidar_clipping: Any = None


class ExperimentFile(_Section):
    """One experiment file (experiments/<name>.yaml)."""

    name: str = text(
        ...,
        NAME,
        "lowercase letters, digits and '-', starting with a letter, at most 40 characters "
        "(it names the stack, jobs and S3 prefix)",
    )
    track: str = Field(description="one of the simapp worlds (rollouts/data/worlds.txt)")
    race: Race | None = None
    car: Car | None = None
    training: Training | None = None
    rollouts: Rollouts | None = None
    trainer: Trainer | None = None
    model_metadata: str | ModelMetadata = Field(
        description="a path to model_metadata.json (relative to this file) or inline"
    )
    reward_function: str = Field(description="a Python file defining reward_function(params)")
    hyperparameters: str | Hyperparameters | None = Field(
        None, description="a path to hyperparameters.json or inline"
    )
    video: bool = True
    pretrained: Pretrained | None = None
    evaluation: Evaluation | None = None
    budget_usd: float | None = bounded(None, 0.01, 1_000_000)
    sweep: dict[str, list[Any]] | None = Field(
        None, description="dotted field paths to lists of values: one experiment per variant"
    )
    sweep_mode: str = choice("product", ("product", "zip"))
    tags: dict[str, str] | None = None


# Message texts for the reader, not schema keywords.
READER_ONLY = ("allowed", "why")


def _without_reader_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_reader_keys(v) for k, v in node.items() if k not in READER_ONLY}
    if isinstance(node, list):
        return [_without_reader_keys(v) for v in node]
    return node


def json_schema() -> dict[str, Any]:
    """The experiment file's JSON Schema (2020-12), tracks listed by name."""
    schema = _without_reader_keys(ExperimentFile.model_json_schema())
    worlds = list(contract.world_names())
    schema["properties"]["track"]["enum"] = worlds
    return {"$schema": SCHEMA_DIALECT, "$id": "experiment.schema.json", **schema}
