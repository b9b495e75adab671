"""Import a deepracer-for-cloud (DRfC) configuration into an experiment file.

DRfC keeps its settings in ``run.env`` (``DR_*`` variables of one training run), ``system.env``
(the machine: workers, images, S3 endpoints) and, with ``DR_TRAIN_MULTI_CONFIG=True``, one
``worker-<n>.env`` per extra worker (n = 2, 3, ...: worker index n - 1 here). The model metadata,
hyperparameters and reward function live in DRfC's local S3 (``DR_LOCAL_S3_*_KEY``), which cannot
be read offline, so they are taken from local files: the flags, else ``model_metadata.json`` etc.
next to the env files, else the local copy DRfC uploads them from (its ``custom_files/`` folder
beside ``run.env``, i.e. the ``DR_LOCAL_S3_*_KEY`` path taken relative to the env file's folder).

Every variable ends up in exactly one list: ``mapped`` (with the experiment field it became) or
``unmapped`` (with the reason). Nothing is dropped silently.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rollouts import contract

VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
NAME_CLEAN = re.compile(r"[^a-z0-9-]+")


class DrfcError(ValueError):
    """The DRfC files cannot be imported (unreadable, or a required file is missing)."""


@dataclass(frozen=True)
class EnvFile:
    path: Path
    values: dict[str, str]


@dataclass
class Variable:
    variable: str
    value: str
    source: str
    target: str | None = None  # the experiment field, when mapped
    reason: str | None = None  # why not, when unmapped

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "variable": self.variable,
            "value": self.value,
            "file": self.source,
        }
        entry |= {"field": self.target} if self.target else {"reason": self.reason}
        return entry


@dataclass
class ImportResult:
    experiment: dict[str, Any]
    mapped: list[Variable] = field(default_factory=list)
    unmapped: list[Variable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "mapped": [m.as_dict() for m in self.mapped],
            "unmapped": [m.as_dict() for m in self.unmapped],
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------- env files


def parse_env(path: Path, *, inherited: Mapping[str, str] | None = None) -> EnvFile:
    """Read ``KEY=value`` lines (comments, blank lines, ``export`` and quotes allowed).

    ``$VAR`` / ``${VAR}`` references are expanded from earlier lines and ``inherited`` (the
    way DRfC's shell sourcing resolves ``DR_DISPLAY_NAME=$DR_CAR_NAME``); unknown ones stay.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DrfcError(f"{path}: cannot be read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise DrfcError(
            f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
            f"{error.start}); DRfC env files are plain text"
        ) from None
    scope = dict(inherited or {})
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise DrfcError(f"{path}:{number}: not a KEY=value line: {line.strip()!r}")
        try:
            parts = shlex.split(raw, comments=True)
        except ValueError as error:
            raise DrfcError(f"{path}:{number}: {error} in {line.strip()!r}") from None
        value = " ".join(parts)
        if "'" not in raw:  # single quotes suppress expansion in the shell
            value = VARIABLE.sub(lambda m: scope.get(m.group(1) or m.group(2), m.group(0)), value)
        values[key] = value
        scope[key] = value
    return EnvFile(path=path, values=values)


def _bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    return None


def _num(value: str) -> int | float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() and "." not in value else number


# ----------------------------------------------------------------------------- tables

# run.env variable -> (section path, converter). Converted values are validated by the spec.
RUN_FIELDS: dict[str, tuple[str, str]] = {
    "DR_WORLD_NAME": ("track", "str"),
    "DR_RACE_TYPE": ("race.type", "str"),
    "DR_CAR_NAME": ("car.name", "str"),
    "DR_CAR_COLOR": ("car.color", "str"),
    "DR_CAR_BODY_SHELL_TYPE": ("car.shell", "str"),
    "DR_ENABLE_DOMAIN_RANDOMIZATION": ("training.enable_domain_randomization", "bool"),
    "DR_TRAIN_CHANGE_START_POSITION": ("training.change_start_position", "bool"),
    "DR_TRAIN_REVERSE_DIRECTION": ("training.reverse_direction", "bool"),
    "DR_TRAIN_ALTERNATE_DRIVING_DIRECTION": ("training.alternate_driving_direction", "bool"),
    "DR_TRAIN_START_POSITION_OFFSET": ("training.start_position_offset", "num"),
    "DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST": ("training.round_robin_advance_dist", "num"),
    "DR_TRAIN_MIN_EVAL_TRIALS": ("training.min_eval_trials", "num"),
    "DR_TRAIN_BEST_MODEL_METRIC": ("training.best_model_metric", "str"),
}
OA_FIELDS: dict[str, tuple[str, str]] = {
    "DR_OA_NUMBER_OF_OBSTACLES": ("number_of_obstacles", "num"),
    "DR_OA_MIN_DISTANCE_BETWEEN_OBSTACLES": ("min_distance_between_obstacles", "num"),
    "DR_OA_RANDOMIZE_OBSTACLE_LOCATIONS": ("randomize_obstacle_locations", "bool"),
    "DR_OA_IS_OBSTACLE_BOT_CAR": ("is_obstacle_bot_car", "bool"),
    "DR_OA_OBSTACLE_TYPE": ("obstacle_type", "str"),
    "DR_OA_OBJECT_POSITIONS": ("object_positions", "positions"),
}
H2B_FIELDS: dict[str, tuple[str, str]] = {
    "DR_H2B_IS_LANE_CHANGE": ("is_lane_change", "bool"),
    "DR_H2B_LOWER_LANE_CHANGE_TIME": ("lower_lane_change_time", "num"),
    "DR_H2B_UPPER_LANE_CHANGE_TIME": ("upper_lane_change_time", "num"),
    "DR_H2B_LANE_CHANGE_DISTANCE": ("lane_change_distance", "num"),
    "DR_H2B_NUMBER_OF_BOT_CARS": ("number_of_bot_cars", "num"),
    "DR_H2B_MIN_DISTANCE_BETWEEN_BOT_CARS": ("min_distance_between_bot_cars", "num"),
    "DR_H2B_RANDOMIZE_BOT_CAR_LOCATIONS": ("randomize_bot_car_locations", "bool"),
    "DR_H2B_BOT_CAR_SPEED": ("bot_car_speed", "num"),
    "DR_H2B_BOT_CAR_PENALTY": ("penalty_seconds", "num"),
}
# worker-<n>.env variables that the experiment format can override per worker.
WORKER_FIELDS: dict[str, tuple[str, str]] = {
    "DR_WORLD_NAME": ("track", "str"),
    "DR_TRAIN_REVERSE_DIRECTION": ("reverse_direction", "bool"),
    "DR_TRAIN_CHANGE_START_POSITION": ("change_start_position", "bool"),
    "DR_TRAIN_ALTERNATE_DRIVING_DIRECTION": ("alternate_driving_direction", "bool"),
}

# Known variables without an equivalent, by name or prefix (first match wins), with the reason.
UNMAPPED_REASONS: tuple[tuple[str, str], ...] = (
    ("DR_EVAL_", "evaluation settings: an experiment describes training only"),
    ("DR_RUN_ID", "DRfC's local run slot; here every experiment is its own stack"),
    (
        "DR_LOCAL_S3_PROFILE",
        "a local AWS CLI profile for DRfC's MinIO; deployments use the deploying role",
    ),
    ("DR_LOCAL_S3_BUCKET", "DRfC's local bucket; the platform stack provides the data bucket"),
    (
        "DR_LOCAL_S3_MODEL_PREFIX",
        "DRfC's model prefix; the experiment stores everything under "
        "experiments/<name>/ in the platform bucket",
    ),
    (
        "DR_LOCAL_S3_CUSTOM_FILES_PREFIX",
        "S3 layout of DRfC; the files are bundled from the experiment's local files",
    ),
    ("DR_LOCAL_S3_TRAINING_PARAMS_FILE", "the training params YAML is rendered by the project"),
    ("DR_LOCAL_S3_EVAL_PARAMS_FILE", "evaluation settings: an experiment describes training only"),
    ("DR_LOCAL_S3_METRICS_PREFIX", "metrics go to experiments/<name>/metrics/"),
    ("DR_UPLOAD_", "uploading to the DeepRacer console is not part of training here"),
    ("DR_CLOUD", "DRfC's hosting mode; the platform stack defines the cloud resources"),
    ("DR_AWS_APP_REGION", "the region comes from the deploy environment (CDK_DEFAULT_REGION)"),
    ("DR_GUI_ENABLE", "no GUI: rollouts run headless on Batch/RoboMaker"),
    (
        "DR_KINESIS_STREAM_NAME",
        "streams are created per worker by the experiment stack (rollouts-<name>-<i>)",
    ),
    ("DR_CAMERA_MAIN_ENABLE", "always True: the main camera feeds video and MP4s"),
    ("DR_CAMERA_SUB_ENABLE", "always False: the second camera costs simulation time"),
    ("DR_ENABLE_EXTRA_KVS_OVERLAY", "the video overlay is not configurable here"),
    ("DR_SIMAPP_SOURCE", "the platform's simapp image is a CDK asset (simapp/Dockerfile)"),
    ("DR_SIMAPP_VERSION", "set the platform's cdk context 'simappVersion' instead"),
    ("DR_MINIO_IMAGE", "no MinIO: the platform stack uses S3"),
    ("DR_ANALYSIS_IMAGE", "the analysis container is not part of this project"),
    ("DR_ROBOMAKER_", "local Docker settings of DRfC's robomaker container"),
    ("DR_SAGEMAKER_", "local Docker settings of DRfC's sagemaker container"),
    ("DR_CLOUD_WATCH_", "logging is configured by the platform stack"),
    ("DR_DOCKER_STYLE", "no local Docker: jobs run on AWS"),
    ("DR_HOST_X", "no X server: rollouts run headless"),
    ("DR_DISPLAY", "no X server: rollouts run headless"),
    ("DR_WEBVIEWER_PORT", "no local web viewer: watch the Kinesis video streams"),
    ("DR_QUIET_ACTIVATE", "a DRfC shell setting"),
    ("DR_REMOTE_MINIO_URL", "no MinIO: the platform stack uses S3"),
    ("DR_TELEGRAF_", "no telegraf: use `rollouts metrics` / `rollouts status`"),
    ("DR_DROA_", "DeepRacer-on-AWS integration is not part of this project"),
    ("DR_EXPERIMENT_NAME", "use --name (the experiment name names the stack)"),
    ("DR_TRAIN_RTF", "the real-time factor is not configurable in the experiment format"),
    ("DR_TRAIN_MAX_STEPS_PER_ITERATION", "not configurable in the experiment format"),
    ("DR_DISPLAY_NAME", "the experiment uses car.name as display and racer name"),
    ("DR_RACER_NAME", "the experiment uses car.name as display and racer name"),
)


def _reason(variable: str) -> str:
    for key, reason in UNMAPPED_REASONS:
        if variable == key or (key.endswith("_") and variable.startswith(key)):
            return reason
    return "no equivalent in the experiment format"


def _convert(kind: str, value: str) -> Any:
    if kind == "bool":
        return _bool(value)
    if kind == "num":
        return _num(value)
    if kind == "positions":
        # DRfC: "progress,lane" pairs separated by ';'
        return [p.strip() for p in value.split(";") if p.strip()]
    return value


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


# ----------------------------------------------------------------------------- import


def _worker_number(path: Path, position: int) -> int:
    """DRfC names extra workers worker-2.env, worker-3.env (1-based); index here is n - 1."""
    match = re.search(r"worker-(\d+)\.env$", path.name)
    if match and int(match.group(1)) >= 2:
        return int(match.group(1)) - 1
    return position


def _relative(target: Path, base: Path) -> str:
    return Path(os.path.relpath(target.resolve(), base.resolve())).as_posix()


def _pick_file(given: Path | None, folders: Sequence[Path], names: Sequence[str]) -> Path | None:
    if given is not None:
        if not given.is_file():
            raise DrfcError(f"{given}: no such file")
        return given
    for folder in folders:
        for name in names:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def import_drfc(
    run_env: Path,
    system_env: Path | None,
    worker_envs: Sequence[Path],
    *,
    out: Path,
    name: str | None = None,
    model_metadata: Path | None = None,
    hyperparameters: Path | None = None,
    reward_function: Path | None = None,
) -> ImportResult:
    """Build the experiment mapping (not yet written) and the mapped/unmapped report."""
    system = parse_env(system_env) if system_env else EnvFile(Path("system.env"), {})
    run = parse_env(run_env, inherited=system.values)
    result = ImportResult(experiment={})
    exp = result.experiment
    run_values = run.values

    def mapped(var: str, value: str, src: Path, target: str) -> None:
        result.mapped.append(Variable(var, value, src.name, target=target))

    def unmapped(var: str, value: str, src: Path, reason: str) -> None:
        result.unmapped.append(Variable(var, value, src.name, reason=reason))

    # -- name
    prefix = run_values.get("DR_LOCAL_S3_MODEL_PREFIX", "")
    derived = NAME_CLEAN.sub("-", (name or prefix or out.stem).lower()).strip("-")
    if derived and not derived[0].isalpha():
        derived = "x-" + derived
    exp["name"] = derived[:40].rstrip("-") or "imported"
    if not name and prefix:
        result.notes.append(
            f"name {exp['name']!r} derived from DR_LOCAL_S3_MODEL_PREFIX; pass "
            "--name to choose another"
        )

    race_type = run_values.get("DR_RACE_TYPE", "TIME_TRIAL")
    handled: set[str] = set()

    # -- run.env fields
    for var, (target, kind) in RUN_FIELDS.items():
        if var in run_values:
            value = run_values[var]
            converted = _convert(kind, value)
            if converted is None or (kind == "str" and not value):
                unmapped(var, value, run.path, f"{value!r} is not a valid value for {target}")
            else:
                _set(exp, target, converted)
                mapped(var, value, run.path, target)
            handled.add(var)
    for var in ("DR_DISPLAY_NAME", "DR_RACER_NAME"):
        if var in run_values:
            handled.add(var)
            if run_values[var] == run_values.get("DR_CAR_NAME"):
                mapped(var, run_values[var], run.path, "car.name")
            else:
                unmapped(var, run_values[var], run.path, _reason(var))

    # -- race-specific settings
    for fields, race, section in (
        (OA_FIELDS, "OBJECT_AVOIDANCE", "object_avoidance"),
        (H2B_FIELDS, "HEAD_TO_BOT", "head_to_bot"),
    ):
        for var, (key, kind) in fields.items():
            if var not in run_values:
                continue
            handled.add(var)
            value = run_values[var]
            if race_type != race:
                unmapped(
                    var,
                    value,
                    run.path,
                    f"only used when DR_RACE_TYPE is {race} (it is {race_type})",
                )
                continue
            converted = _convert(kind, value)
            if kind == "positions" and not converted:
                mapped(var, value, run.path, f"race.{section}.{key} (empty: not set)")
                continue
            if converted is None:
                unmapped(var, value, run.path, f"{value!r} is not a valid value for {key}")
                continue
            _set(exp, f"race.{section}.{key}", converted)
            mapped(var, value, run.path, f"race.{section}.{key}")
    oa = exp.get("race", {}).get("object_avoidance", {})
    if oa.get("object_positions"):
        # The positions decide the count (the simapp ignores the number when positions are set).
        oa.pop("number_of_obstacles", None)

    # -- pretrained model
    if "DR_LOCAL_S3_PRETRAINED" in run_values:
        handled.update(
            {
                "DR_LOCAL_S3_PRETRAINED",
                "DR_LOCAL_S3_PRETRAINED_PREFIX",
                "DR_LOCAL_S3_PRETRAINED_CHECKPOINT",
            }
        )
        flag = run_values["DR_LOCAL_S3_PRETRAINED"]
        pre_prefix = run_values.get("DR_LOCAL_S3_PRETRAINED_PREFIX", "")
        checkpoint = run_values.get("DR_LOCAL_S3_PRETRAINED_CHECKPOINT", "last")
        if _bool(flag):
            mapped("DR_LOCAL_S3_PRETRAINED", flag, run.path, "pretrained")
            # The trainer reads pretrained models from the platform bucket's experiments/ only:
            # the DRfC prefix becomes the name of the experiment folder to copy the model into.
            target = "experiments/" + _experiment_slug(pre_prefix)
            exp["pretrained"] = {"prefix": target}
            mapped(
                "DR_LOCAL_S3_PRETRAINED_PREFIX",
                pre_prefix,
                run.path,
                f"pretrained.prefix ({target})",
            )
            if checkpoint in ("last", "best"):
                exp["pretrained"]["checkpoint"] = checkpoint
                mapped(
                    "DR_LOCAL_S3_PRETRAINED_CHECKPOINT",
                    checkpoint,
                    run.path,
                    "pretrained.checkpoint",
                )
            else:
                unmapped(
                    "DR_LOCAL_S3_PRETRAINED_CHECKPOINT",
                    checkpoint,
                    run.path,
                    "only 'last' or 'best' are supported",
                )
            result.notes.append(
                f"pretrained model: copy s3://<DRfC bucket>/{pre_prefix}/ to "
                f"s3://<platform data bucket>/{target}/ before deploying"
            )
        else:
            mapped("DR_LOCAL_S3_PRETRAINED", flag, run.path, "pretrained (not set)")
            for var in ("DR_LOCAL_S3_PRETRAINED_PREFIX", "DR_LOCAL_S3_PRETRAINED_CHECKPOINT"):
                if var in run_values:
                    unmapped(var, run_values[var], run.path, "DR_LOCAL_S3_PRETRAINED is False")

    # -- files (DRfC keeps them in its local S3: read local copies instead)
    folders = [run_env.parent] + ([system_env.parent] if system_env else [])
    out_dir = out.parent
    files = (
        (
            "model_metadata",
            model_metadata,
            ("model_metadata.json",),
            "DR_LOCAL_S3_MODEL_METADATA_KEY",
            "--model-metadata",
            True,
        ),
        (
            "hyperparameters",
            hyperparameters,
            ("hyperparameters.json",),
            "DR_LOCAL_S3_HYPERPARAMETERS_KEY",
            "--hyperparameters",
            False,
        ),
        (
            "reward_function",
            reward_function,
            ("reward_function.py",),
            "DR_LOCAL_S3_REWARD_KEY",
            "--reward-function",
            True,
        ),
    )
    missing = []
    for key, given, names, variable, flag_name, required in files:
        handled.add(variable)
        s3_key = run_values.get(variable, "")
        # DRfC's `dr-upload-custom-files` syncs the local custom_files/ folder (beside run.env)
        # to DR_LOCAL_S3_CUSTOM_FILES_PREFIX, so the key is also the local copy's relative path.
        local_key = [s3_key] if s3_key and ".." not in Path(s3_key).parts else []
        path = _pick_file(given, folders, [*names, *local_key])
        if path is None:
            if required:
                beside = f"{names[0]}" + (f" or {s3_key}" if local_key else "")
                missing.append(
                    f"{key}: {variable}={s3_key or '(unset)'} is in DRfC's S3 and "
                    f"cannot be read offline, and no {beside} is next to "
                    f"{run_env.name}: pass {flag_name} FILE"
                )
            else:
                result.notes.append(
                    f"{key}: no {names[0]} found and no {flag_name} given: the "
                    "project's defaults apply (DRfC's defaults)"
                )
            if variable in run_values:
                unmapped(variable, s3_key, run.path, f"no local copy; pass {flag_name}")
            continue
        exp[key] = _relative(path, out_dir)
        if variable in run_values:
            mapped(variable, s3_key, run.path, f"{key} (local file {path})")
        else:
            result.notes.append(f"{key}: read from {path}")
    if missing:
        raise DrfcError("cannot import without these files:\n  " + "\n  ".join(missing))

    # -- system.env
    for var, value in system.values.items():
        if var == "DR_WORKERS":
            count = _num(value)
            if isinstance(count, int) and count >= 1:
                _set(exp, "rollouts.count", count)
                mapped(var, value, system.path, "rollouts.count")
            else:
                unmapped(var, value, system.path, "not a positive integer")
        elif var == "DR_CAMERA_KVS_ENABLE":
            enabled = _bool(value)
            if enabled is None:
                unmapped(var, value, system.path, "not True or False")
            else:
                exp["video"] = enabled
                mapped(var, value, system.path, "video")
        else:
            unmapped(var, value, system.path, _reason(var))

    # -- DR_TRAIN_MULTI_CONFIG decides whether the worker envs below are read (mapped here, so
    # it is not also listed as unmapped by the catch-all that follows)
    multi = _bool(run_values.get("DR_TRAIN_MULTI_CONFIG", "False"))
    if "DR_TRAIN_MULTI_CONFIG" in run_values:
        handled.add("DR_TRAIN_MULTI_CONFIG")
        if multi is None:
            unmapped(
                "DR_TRAIN_MULTI_CONFIG",
                run_values["DR_TRAIN_MULTI_CONFIG"],
                run.path,
                "not True or False: worker env files are ignored",
            )
        else:
            mapped(
                "DR_TRAIN_MULTI_CONFIG",
                run_values["DR_TRAIN_MULTI_CONFIG"],
                run.path,
                "rollouts.overrides (from worker envs)" if multi else "rollouts.overrides (none)",
            )

    # -- everything else in run.env
    for var, value in run_values.items():
        if var not in handled:
            unmapped(var, value, run.path, _reason(var))

    # -- worker envs
    workers = exp.get("rollouts", {}).get("count", 1)
    overrides: dict[int, dict[str, Any]] = {}
    for position, worker_env in enumerate(worker_envs, start=1):
        env = parse_env(worker_env, inherited={**system.values, **run_values})
        index = _worker_number(worker_env, position)
        for var, value in env.values.items():
            if not multi:
                unmapped(
                    var,
                    value,
                    env.path,
                    f"DR_TRAIN_MULTI_CONFIG is {'False' if multi is False else 'not True'}: "
                    "DRfC ignores worker env files (set it to True to import them)",
                )
                continue
            if index >= workers:
                unmapped(
                    var, value, env.path, f"worker {index} does not exist: DR_WORKERS is {workers}"
                )
                continue
            if var in WORKER_FIELDS:
                key, kind = WORKER_FIELDS[var]
                converted = _convert(kind, value)
                if converted is None:
                    unmapped(var, value, env.path, f"{value!r} is not a valid value for {key}")
                    continue
                base_var = var if var in RUN_FIELDS else None
                base = _convert(kind, run_values[base_var]) if base_var in run_values else None
                if converted != base:
                    overrides.setdefault(index, {"worker": index})[key] = converted
                    mapped(var, value, env.path, f"rollouts.overrides[worker={index}].{key}")
                else:
                    mapped(var, value, env.path, f"(same as run.env: worker {index} inherits it)")
            elif var in run_values and run_values[var] == value:
                mapped(var, value, env.path, f"(same as run.env: worker {index} inherits it)")
            elif var in RUN_FIELDS or var in OA_FIELDS or var in H2B_FIELDS:
                unmapped(
                    var,
                    value,
                    env.path,
                    f"per-worker values are supported only for "
                    f"{', '.join(WORKER_FIELDS)}; worker {index} uses the run.env value "
                    f"{run_values.get(var, '(default)')!r}",
                )
            else:
                unmapped(var, value, env.path, _reason(var))
    if overrides:
        exp.setdefault("rollouts", {})["overrides"] = [overrides[i] for i in sorted(overrides)]
    return result


FIELD_ORDER = (
    "name",
    "track",
    "race",
    "car",
    "rollouts",
    "training",
    "model_metadata",
    "reward_function",
    "hyperparameters",
    "pretrained",
    "video",
)


def to_yaml(result: ImportResult, sources: Sequence[Path]) -> str:
    ordered = {k: result.experiment[k] for k in FIELD_ORDER if k in result.experiment}
    header = ["# Imported from deepracer-for-cloud by `rollouts import-drfc`:"]
    header += [f"#   {path}" for path in sources]
    if result.unmapped:
        header.append(f"# Not mapped ({len(result.unmapped)}):")
        header += [f"#   {v.variable}={v.value} ({v.source}): {v.reason}" for v in result.unmapped]
    body = yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False, width=100)
    return "\n".join(header) + "\n" + body


def known_track(name: str) -> bool:
    return name in contract.world_names()


def _experiment_slug(prefix: str) -> str:
    """A DRfC model prefix as an experiment folder name (``^[a-z][a-z0-9-]{0,39}$``)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"drfc-{slug}".rstrip("-")
    return slug[:40].rstrip("-")
