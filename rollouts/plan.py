"""What a deploy of one experiment would run, computed offline (no AWS calls).

The platform settings (backend, instance types, spot, simapp image) come from CDK context: the
``context`` of ``cdk.json`` plus ``-c key=value`` overrides, read through ``rollouts.platform``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rollouts import contract
from rollouts.metrics import episodes_for_worker
from rollouts.naming import experiment_prefix, run_prefix, stack_name, video_stream_name
from rollouts.spec import ExperimentSpec

VIDEO_WARN_WORKERS = 4  # more streams than this: warn about cost
BUCKET_PLACEHOLDER = "<platform data bucket>"
LATEST_RUN_PLACEHOLDER = "<latest-run>"  # the run a pretrained "latest" resolves to at deploy
RUN_ID_PLACEHOLDER = "<run-id>"  # <experiment>-<8 hex>, chosen by the fan-out at deploy time


def find_cdk_json(start: Path) -> Path | None:
    """The nearest cdk.json in ``start`` or its parents, else the one of this repository."""
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / "cdk.json").is_file():
            return folder / "cdk.json"
    repo = Path(__file__).resolve().parents[1] / "cdk.json"
    return repo if repo.is_file() else None


def load_context(cdk_json: Path | None, overrides: Mapping[str, str]) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if cdk_json is not None:
        try:
            document = json.loads(cdk_json.read_text(encoding="utf-8"))
        except OSError as error:
            raise ValueError(f"{cdk_json}: cannot be read: {error.strerror}") from None
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{cdk_json}: cannot read its context: {error}") from None
        raw = document.get("context", {}) if isinstance(document, dict) else None
        if not isinstance(raw, dict):
            raise ValueError(f'{cdk_json}: expected a JSON object with a "context" object')
        context = dict(raw)
    context.update(overrides)
    return context


def platform_summary(context: Mapping[str, Any]) -> dict[str, Any]:
    """Backend and compute of the platform, from ``rollouts.platform`` when it is available."""
    try:
        from rollouts.platform import load_platform_config  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the lead's module is optional for the CLI
        return {"backend": str(context.get("backend", "batch")), "source": "cdk context (raw)"}
    config = load_platform_config(context)  # raises PlatformConfigError (a ValueError)
    return {
        "backend": config.backend,
        "rollout_compute": (
            ("Fargate Spot" if config.spot else "Fargate") + " (own compute environment)"
            if config.backend == "batch"
            else "RoboMaker (retired)"
        ),
        "spot": config.spot,
        "egress": config.egress,
        "gpu": config.gpu,
        "max_vcpus": config.max_vcpus,
        "simapp_image": config.simapp_image,
        "wait_for": config.wait_for,
    }


def build_plan(spec: ExperimentSpec, platform: Mapping[str, Any]) -> dict[str, Any]:
    """The deploy plan as plain data (the ``--json`` document of ``rollouts plan``)."""
    name = spec.name
    count = spec.rollouts.count
    episodes = spec.episodes_per_iteration
    prefix = experiment_prefix(name)
    data = run_prefix(prefix, RUN_ID_PLACEHOLDER)
    backend = platform.get("backend", "batch")
    workers = []
    from rollouts.render import worker_yaml  # noqa: PLC0415

    rendered = [worker_yaml(spec, i) for i in range(count)]
    # The fan-out writes one shared file when all filled files are identical; the video stream
    # name differs per worker, so video on means one file per worker (unless there is one).
    shared = count == 1 or (len(set(rendered)) == 1 and not spec.video)
    for i in range(count):
        override = spec.override_for(i)
        training = spec.training

        def pick(value: bool | None, default: bool) -> bool:
            return default if value is None else value

        workers.append(
            {
                "index": i,
                "track": spec.worker_track(i),
                "race_type": spec.race.type,
                "reverse_direction": pick(override.reverse_direction, training.reverse_direction),
                "change_start_position": pick(
                    override.change_start_position, training.change_start_position
                ),
                "alternate_driving_direction": pick(
                    override.alternate_driving_direction, training.alternate_driving_direction
                ),
                "episodes_per_iteration": episodes_for_worker(episodes, count, i),
                "params_key": f"{data}/"
                + (contract.SHARED_PARAMS_NAME if shared else contract.worker_params_name(i)),
                "video_stream": video_stream_name(name, i) if spec.video else None,
            }
        )
    hyper = spec.hyperparameters
    max_episodes = int(hyper["term_cond_max_episodes"])
    plan: dict[str, Any] = {
        "experiment": name,
        "source": str(spec.source),
        "stack": stack_name(name),
        "backend": backend,
        "trainer": {
            "service": "SageMaker training job (VPC mode)",
            "instance_type": spec.trainer.instance_type,
            "volume_gb": spec.trainer.volume_gb,
            "max_run_minutes": spec.trainer.max_run_minutes,
            "algorithm": spec.model_metadata.get("training_algorithm", "clipped_ppo"),
            "action_space_type": spec.model_metadata.get("action_space_type"),
            "sensors": list(spec.model_metadata.get("sensor", [])),
            "pretrained": None
            if spec.pretrained is None
            else {
                "bucket": BUCKET_PLACEHOLDER,
                "prefix": spec.pretrained.prefix
                or run_prefix(
                    spec.pretrained.bucket_prefix,
                    LATEST_RUN_PLACEHOLDER
                    if spec.pretrained.run in (None, "latest")
                    else spec.pretrained.run,
                ),
                "experiment": spec.pretrained.experiment,
                "run": spec.pretrained.run,
                "checkpoint": spec.pretrained.checkpoint,
            },
        },
        "rollouts": {
            "count": count,
            "service": (
                "AWS Batch array job on Fargate"
                if backend == "batch"
                else "RoboMaker simulation jobs"
            ),
            "vcpus": spec.rollouts.vcpus,
            "memory_mib": spec.rollouts.memory_mib,
            "total_vcpus": spec.rollouts.vcpus * count,
            **{k: v for k, v in platform.items() if k != "backend"},
        },
        "race": {
            "type": spec.race.type,
            "car": {"name": spec.car.name, "color": spec.car.color, "shell": spec.car.shell},
        },
        "workers": workers,
        "video": {
            "enabled": spec.video,
            "streams": [w["video_stream"] for w in workers] if spec.video else [],
        },
        "episodes": {
            "per_iteration": episodes,
            "per_worker": [w["episodes_per_iteration"] for w in workers],
            "max_episodes": max_episodes,
            "max_iterations": -(-max_episodes // episodes),
        },
        "s3": {
            "bucket": BUCKET_PLACEHOLDER,
            "prefix": prefix,
            "run_prefix": data,
            "keys": {
                "training_params": [w["params_key"] for w in workers]
                if not shared
                else [f"{data}/{contract.SHARED_PARAMS_NAME}"],
                "reward_function": f"{data}/{contract.REWARD_FUNCTION_KEY}",
                "model_metadata": f"{data}/{contract.MODEL_METADATA_KEY}",
                "hyperparameters": f"{data}/{contract.HYPERPARAMETERS_KEY}",
                "model": f"{data}/model/",
                "metrics": [f"{data}/{metrics_key(i)}" for i in range(count)],
                "simtrace": [f"{data}/{simtrace_prefix(i, count)}" for i in range(count)],
                "mp4": f"{data}/{contract.MP4_PREFIX}/",
                "run_manifest": f"{prefix}/run.json",
            },
        },
        "tags": {"rollouts:experiment": name, **dict(spec.tags)},
        "warnings": warnings(spec, backend),
    }
    return plan


def metrics_key(worker: int) -> str:
    """Metrics key of a worker, relative to the prefix (worker 0 un-suffixed)."""
    return (
        contract.METRICS_KEY
        if worker == 0
        else contract.METRICS_KEY.replace(".json", f"_{worker}.json")
    )


def simtrace_prefix(worker: int, count: int) -> str:
    """Where a worker's simtrace CSVs land, relative to the run prefix: the simapp adds the worker
    index when there are several (bundle/markov/rollout_worker.py) and then training-simtrace/."""
    return (f"{worker}/" if count > 1 else "") + f"{contract.SIMTRACE_PREFIX}/"


# What the DeepRacer console lets a reward function import (AWS DeepRacer developer guide,
# "Reward function"); the simapp itself imports the file as it is, in every rollout.
CONSOLE_IMPORTS = ("math", "random", "numpy", "scipy", "shapely")


def reward_import_warnings(source: str) -> list[str]:
    """Modules a reward function imports beyond what the console allows."""
    import ast  # noqa: PLC0415

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the spec has refused it already
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module.split(".")[0])
    extra = sorted(modules - set(CONSOLE_IMPORTS) - {"__future__"})
    if not extra:
        return []
    return [
        f"reward_function imports {', '.join(extra)}: the DeepRacer console accepts only "
        f"{', '.join(CONSOLE_IMPORTS)}; the simapp runs it in every rollout with the rollout's "
        "role, which may read and write this run's data"
    ]


def warnings(spec: ExperimentSpec, backend: str) -> list[str]:
    count = spec.rollouts.count
    episodes = spec.episodes_per_iteration
    found: list[str] = []
    if count > episodes:
        found.append(
            f"{count} workers but only {episodes} episodes per iteration: workers "
            f"{episodes}..{count - 1} exit at once and waste their compute"
        )
    elif count > 1 and episodes % count:
        shares = sorted({episodes_for_worker(episodes, count, i) for i in range(count)})
        found.append(
            f"{episodes} episodes per iteration do not split evenly over {count} "
            f"workers ({' or '.join(map(str, shares))} each): the trainer waits for the "
            "slowest worker every iteration"
        )
    if count > 1 and episodes // count == 1:
        found.append(
            "each worker runs about 1 episode per iteration: simulator sync overhead "
            "dominates; raise num_episodes_between_training or use fewer workers"
        )
    if spec.video and count > VIDEO_WARN_WORKERS:
        found.append(
            f"video is on for {count} workers: {count} Kinesis video streams are "
            "billed while the run lasts; consider video: false (or fewer workers)"
        )
    found.extend(reward_import_warnings(spec.reward_function))
    if backend == "robomaker":
        found.append(
            "backend robomaker: AWS retired RoboMaker on 2025-09-10; this plan "
            "synthesizes but cannot be deployed"
        )
    if spec.trainer.instance_type.split(".")[1].startswith(("p", "g")) and (
        spec.hyperparameters.get("batch_size", 64) <= 64 and count <= 2
    ):
        found.append(
            f"trainer {spec.trainer.instance_type} is a GPU instance for a small job "
            f"(batch_size {spec.hyperparameters.get('batch_size')}, {count} workers); "
            "ml.c5.2xlarge is usually enough"
        )
    return found
