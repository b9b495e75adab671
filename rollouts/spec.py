"""Experiment files (``experiments/*.yaml``) -> validated, frozen ``ExperimentSpec``.

Every problem is reported with the file, the field, the value and what is allowed; all problems of
a file are collected before failing, and nothing downstream runs on an invalid spec.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from rollouts import contract, spec_models, sweep, yaml_input
from rollouts.cost import budget_problems
from rollouts.problems import MISSING, Problem, SpecError

# Declared in rollouts.spec_models; compiled here for the code that checks names elsewhere.
MAX_ROLLOUTS = spec_models.MAX_ROLLOUTS
NAME_PATTERN = re.compile(spec_models.NAME)
TRAINER_INSTANCE_PATTERN = re.compile(spec_models.TRAINER_INSTANCE)
# The characters every tagged service accepts (RoboMaker's tag pattern is the narrowest).
TAG_KEY_PATTERN = re.compile(r"^[A-Za-z0-9 _.:/=+\-]{1,128}$")
TAG_VALUE_PATTERN = re.compile(r"^[A-Za-z0-9 _.:/=+\-]{0,256}$")
PRETRAINED_PREFIX_PATTERN = re.compile(spec_models.PRETRAINED_PREFIX)
RUN_REF_PATTERN = re.compile(spec_models.RUN_REF)
MAX_USER_TAGS = 40  # jobs take 50 tags; the project adds its own

T = TypeVar("T")


# Problems and their error live in rollouts.problems (sweeps and the cost check report them too).
_MISSING: Any = MISSING
_FROM_MODEL: Any = object()  # a reader's default: take the field's from the section's model


# ----------------------------------------------------------------------------- typed spec


# The typed results of reading a file. Their fields' defaults, bounds and choices are declared
# once, in rollouts.spec_models; these classes hold what was read.


@dataclass(frozen=True)
class ObjectAvoidance:
    number_of_obstacles: int
    min_distance_between_obstacles: float
    randomize_obstacle_locations: bool
    is_obstacle_bot_car: bool
    obstacle_type: str
    object_positions: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeadToBot:
    number_of_bot_cars: int
    is_lane_change: bool
    lower_lane_change_time: float
    upper_lane_change_time: float
    lane_change_distance: float
    min_distance_between_bot_cars: float
    randomize_bot_car_locations: bool
    bot_car_speed: float
    penalty_seconds: float


@dataclass(frozen=True)
class Race:
    type: str
    object_avoidance: ObjectAvoidance | None = None
    head_to_bot: HeadToBot | None = None


@dataclass(frozen=True)
class Car:
    name: str
    color: str
    shell: str


@dataclass(frozen=True)
class Training:
    change_start_position: bool
    alternate_driving_direction: bool
    reverse_direction: bool
    start_position_offset: float
    round_robin_advance_dist: float
    enable_domain_randomization: bool
    min_eval_trials: int
    best_model_metric: str
    number_of_resets: int


@dataclass(frozen=True)
class WorkerOverride:
    """Settings in which one rollout worker differs from the experiment's."""

    worker: int
    track: str | None = None
    reverse_direction: bool | None = None
    change_start_position: bool | None = None
    alternate_driving_direction: bool | None = None


@dataclass(frozen=True)
class Rollouts:
    count: int
    vcpus: int
    memory_mib: int
    on_failure: str
    max_restarts: int
    stall_minutes: int
    overrides: tuple[WorkerOverride, ...] = ()


@dataclass(frozen=True)
class Trainer:
    instance_type: str
    max_run_minutes: int
    volume_gb: int


@dataclass(frozen=True)
class Evaluation:
    """Evaluate every run once its training job has trained (``evaluation:``)."""

    tracks: tuple[str, ...]
    both_directions: bool
    trials: int
    checkpoint: str  # best | last | a checkpoint number
    continuous: bool
    resets: int
    off_track_penalty: float
    collision_penalty: float


@dataclass(frozen=True)
class Pretrained:
    """The model a run starts from, in the platform bucket.

    Either a run of an experiment (``experiment``, ``run``: ``latest`` or a run id; the model is
    ``experiments/<experiment>/runs/<run>/model/``) or a model prefix of its own (``prefix``, e.g.
    a deepracer-for-cloud model copied to ``experiments/<name>``, whose ``model/`` is below it).
    """

    prefix: str | None = None
    experiment: str | None = None
    run: str | None = None
    checkpoint: str = "last"

    @property
    def bucket_prefix(self) -> str:
        """The prefix the fan-out gets: the experiment's (with ``run``) or the model's."""
        return self.prefix if self.prefix is not None else f"experiments/{self.experiment}"


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment. ``source`` is the file it came from."""

    name: str
    track: str
    source: Path
    race: Race
    car: Car
    training: Training
    rollouts: Rollouts
    trainer: Trainer
    model_metadata: Mapping[str, Any]
    hyperparameters: Mapping[str, Any]
    reward_function: str
    reward_function_path: Path
    video: bool = True
    pretrained: Pretrained | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    # A variant of a sweep: the base name and the values it differs in (dotted path -> value).
    sweep_base: str | None = None
    variant: Mapping[str, Any] = field(default_factory=dict)
    budget_usd: float | None = None

    @property
    def episodes_per_iteration(self) -> int:
        return int(self.hyperparameters["num_episodes_between_training"])

    def worker_track(self, index: int) -> str:
        return self.override_for(index).track or self.track

    def override_for(self, index: int) -> WorkerOverride:
        for override in self.rollouts.overrides:
            if override.worker == index:
                return override
        return WorkerOverride(worker=index)

    @property
    def worker_tracks(self) -> tuple[str, ...]:
        return tuple(self.worker_track(i) for i in range(self.rollouts.count))


# ----------------------------------------------------------------------------- field reader


class _Section:
    """Reads one mapping of the file, recording problems instead of raising on the first.

    Its rules come from the section's model (``rollouts.spec_models``): a field's default,
    bounds, choices and pattern are taken from there unless a call gives them (for the few that
    depend on other fields)."""

    def __init__(
        self,
        data: Any,
        *,
        file: str,
        path: str,
        problems: list[Problem],
        required: bool = False,
        model: type[BaseModel] | None = None,
    ) -> None:
        self.file = file
        self.path = path
        self.problems = problems
        self.seen: set[str] = set()
        self.model = model
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            self.fail(path or "(top level)", data, "is not allowed: expected a mapping of keys")
            data = {}
        self.data: Mapping[str, Any] = data
        self.required = required

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, field_name: str, value: Any, message: str) -> None:
        self.problems.append(Problem(self.file, field_name, value, message))

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key, _MISSING)

    def section(self, key: str, model: type[BaseModel] | None = None) -> _Section:
        raw = self.raw(key)
        return _Section(
            None if raw is _MISSING else raw,
            file=self.file,
            path=self.name(key),
            problems=self.problems,
            model=model or self._nested_model(key),
        )

    # -- rules from the model

    def _field(self, key: str) -> FieldInfo:
        if self.model is None or key not in self.model.model_fields:
            raise KeyError(f"{self.path or 'experiment'}.{key} is not declared in spec_models")
        return self.model.model_fields[key]

    def _nested_model(self, key: str) -> type[BaseModel] | None:
        if self.model is None or key not in self.model.model_fields:
            return None
        annotation = self.model.model_fields[key].annotation
        for candidate in (annotation, *typing.get_args(annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                return candidate
        return None

    def declared_default(self, key: str) -> Any:
        return self._default(key, _FROM_MODEL)

    def _default(self, key: str, default: Any) -> Any:
        if default is not _FROM_MODEL:
            return default
        field_info = self._field(key)
        return _MISSING if field_info.is_required() else field_info.default

    def _extra(self, key: str) -> dict[str, Any]:
        extra = self._field(key).json_schema_extra
        return dict(extra) if isinstance(extra, Mapping) else {}

    def _bounds(self, key: str, low: Any, high: Any, why: str | None) -> tuple[Any, Any, str]:
        for item in self._field(key).metadata if low is None or high is None else ():
            low = item.ge if low is None and isinstance(item, annotated_types.Ge) else low
            high = item.le if high is None and isinstance(item, annotated_types.Le) else high
        return low, high, why if why is not None else str(self._extra(key).get("why", ""))

    # -- readers

    def _value(self, key: str, default: T, convert: Callable[[Any], T | None], allowed: str) -> T:
        raw = self.raw(key)
        if raw is _MISSING:
            if default is _MISSING:
                self.fail(self.name(key), raw, f"is required: {allowed}")
            return default
        converted = convert(raw)
        if converted is None:
            self.fail(self.name(key), raw, f"is not allowed: {allowed}")
            return default
        return converted

    def string(
        self,
        key: str,
        default: Any = _FROM_MODEL,
        *,
        pattern: re.Pattern[str] | None = None,
        allowed: str | None = None,
    ) -> str:
        if pattern is None and self.model is not None and key in self.model.model_fields:
            declared = next(
                (
                    getattr(m, "pattern", None)
                    for m in self._field(key).metadata
                    if getattr(m, "pattern", None)
                ),
                None,
            )
            pattern = re.compile(declared) if declared else None
        if allowed is None:
            declared_allowed = (
                self._extra(key).get("allowed")
                if self.model is not None and key in self.model.model_fields
                else None
            )
            allowed = str(declared_allowed or "a string")
        default = self._default(key, default)

        def convert(raw: Any) -> str | None:
            if not isinstance(raw, str) or not raw.strip():
                return None
            return raw if pattern is None or pattern.match(raw) else None

        return self._value(key, default, convert, allowed)

    def choice(
        self, key: str, choices: tuple[str, ...] | None = None, default: Any = _FROM_MODEL
    ) -> str:
        if choices is None:
            choices = tuple(self._extra(key)["enum"])
        default = self._default(key, default)
        raw = self.raw(key)
        self.seen.discard(key)
        value = self.string(key, default, allowed="one of " + ", ".join(choices))
        if raw is not _MISSING and isinstance(raw, str) and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(
                self.name(key), raw, f"is not allowed: must be one of {', '.join(choices)}{hint}"
            )
            return default if default is not _MISSING else choices[0]
        return value

    def boolean(self, key: str, default: Any = _FROM_MODEL) -> bool:
        return self._value(
            key,
            self._default(key, default),
            lambda raw: raw if isinstance(raw, bool) else None,
            "true or false",
        )

    def integer(
        self,
        key: str,
        default: Any = _FROM_MODEL,
        *,
        low: int | None = None,
        high: int | None = None,
        why: str | None = None,
    ) -> int:
        low, high, why = self._bounds(key, low, high, why)
        default = self._default(key, default)

        def convert(raw: Any) -> int | None:
            if isinstance(raw, bool) or not isinstance(raw, int):
                return None
            return raw if low <= raw <= high else None

        return self._value(key, default, convert, f"an integer from {low} to {high}{why}")

    def number(
        self,
        key: str,
        default: Any = _FROM_MODEL,
        *,
        low: float | None = None,
        high: float | None = None,
    ) -> float:
        low, high, _why = self._bounds(key, low, high, "")
        default = self._default(key, default)

        def convert(raw: Any) -> float | None:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                return None
            return float(raw) if low <= raw <= high else None

        return self._value(key, default, convert, f"a number from {low:g} to {high:g}")

    def finish(self) -> None:
        """Unknown keys are errors: a typo must not silently fall back to a default."""
        for key in sorted(set(self.data) - self.seen, key=str):
            known = sorted(self.seen)
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(
                self.name(str(key)),
                self.data[key],
                f"is not a known key here: allowed keys are {', '.join(known)}{hint}",
            )


# ----------------------------------------------------------------------------- loading


def load_experiment(path: str | Path, *, display_root: Path | None = None) -> ExperimentSpec:
    """Load one experiment file; a file with ``sweep:`` is refused here (it is many
    experiments: ``load_variants``)."""
    specs = load_variants(path, display_root=display_root)
    if len(specs) != 1 or specs[0].sweep_base is not None:
        shown = _display(Path(path), display_root)
        raise SpecError(
            [
                Problem(
                    shown,
                    "sweep",
                    f"{len(specs)} variants",
                    "is a sweep: load it with load_variants (rollouts validate/plan list them)",
                )
            ]
        )
    return specs[0]


def load_variants(path: str | Path, *, display_root: Path | None = None) -> list[ExperimentSpec]:
    """Load an experiment file: one experiment, or one per variant of its ``sweep:``."""
    path = Path(path)
    shown = _display(path, display_root)
    document = read_document(path, shown)
    variants, problems = sweep.expand(document, file=shown, base=path.parent)
    if problems:
        raise SpecError(problems)
    specs = []
    for variant in variants:
        try:
            spec = experiment_from_document(variant.document, path, variant.file)
        except SpecError as error:  # every variant's problems, all at once
            problems.extend(error.problems)
            continue
        specs.append(
            replace(spec, sweep_base=variant.base, variant=variant.values) if variant.base else spec
        )
    problems += budget_problems(specs, shown)
    if problems:
        raise SpecError(problems)
    return specs


def read_document(path: Path, shown: str) -> Any:
    """The YAML 1.2 document of an experiment file, within rollouts.yaml_input's limits (size,
    depth, aliases; duplicate keys refused)."""
    try:
        size = path.stat().st_size
        if size > yaml_input.MAX_BYTES:
            raise SpecError(
                [
                    Problem(
                        shown,
                        "(file)",
                        str(path),
                        f"is {size:,} bytes; an experiment file may have at most "
                        f"{yaml_input.MAX_BYTES:,}",
                    )
                ]
            )
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(
            [Problem(shown, "(file)", str(path), f"cannot be read: {error.strerror}")]
        ) from None
    except UnicodeDecodeError as error:
        raise SpecError(
            [Problem(shown, "(file)", str(path), f"is not UTF-8 text (byte {error.start})")]
        ) from None
    try:
        return yaml_input.load(text)
    except yaml_input.YamlInputError as problem:
        raise SpecError([Problem(shown, "(file)", str(path), str(problem))]) from None


def experiment_from_document(document: Any, path: Path, shown: str) -> ExperimentSpec:
    """Validate one experiment's document (paths in it relative to ``path``'s folder)."""
    problems: list[Problem] = []
    top = _Section(
        document, file=shown, path="", problems=problems, model=spec_models.ExperimentFile
    )
    spec = _read_experiment(top, path)
    top.finish()
    if problems:
        raise SpecError(problems)
    assert spec is not None
    return spec


def load_experiments(
    paths: list[Path], *, display_root: Path | None = None
) -> list[ExperimentSpec]:
    """Load several files, reporting the problems of all of them together; names must be unique."""
    specs: list[ExperimentSpec] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            specs.extend(load_variants(path, display_root=display_root))
        except SpecError as error:
            problems.extend(error.problems)
    seen: dict[str, Path] = {}
    for spec in specs:
        if spec.name in seen:
            problems.append(
                Problem(
                    _display(spec.source, display_root),
                    "name",
                    spec.name,
                    f"is already used by {_display(seen[spec.name], display_root)}: "
                    "experiment names must be unique",
                )
            )
        seen[spec.name] = spec.source
    if problems:
        raise SpecError(problems)
    return specs


def _display(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)


def _read_experiment(top: _Section, path: Path) -> ExperimentSpec | None:
    base = path.parent
    name = top.string("name")
    track = _track(top, "track", None)
    race = _race(top.section("race"))
    car = _car(top.section("car"))
    training = _training(top.section("training"))
    trainer = _trainer(top.section("trainer"))
    hyperparameters = _hyperparameters(top, base)
    model_metadata = _model_metadata(top, base)
    reward_path, reward_source = _reward_function(top, base)
    rollouts = _rollouts(top.section("rollouts"), hyperparameters)
    video = top.boolean("video")
    pretrained = (
        _pretrained(top.section("pretrained"), name if isinstance(name, str) else "")
        if "pretrained" in top.data
        else None
    )
    if "pretrained" not in top.data:
        top.seen.add("pretrained")
    evaluation = _evaluation(top.section("evaluation"), track) if "evaluation" in top.data else None
    top.seen.add("evaluation")
    # Read (and removed) before this, by rollouts.sweep: allowed keys all the same.
    top.seen.update(("sweep", "sweep_mode"))
    budget = top.number("budget_usd")
    tags = _tags(top)
    if isinstance(track, str) and isinstance(training.reverse_direction, bool):
        _directed_tracks(top, track, training, rollouts)
    if model_metadata.get("training_algorithm") == "sac" and (
        model_metadata.get("action_space_type") != "continuous"
    ):
        top.fail(
            "model_metadata.training_algorithm",
            "sac",
            "is not allowed with a discrete action space: SAC needs action_space_type 'continuous'",
        )
    if top.problems:
        return None
    return ExperimentSpec(
        name=name,
        track=track,
        source=path,
        race=race,
        car=car,
        training=training,
        rollouts=rollouts,
        trainer=trainer,
        model_metadata=model_metadata,
        hyperparameters=hyperparameters,
        reward_function=reward_source,
        reward_function_path=reward_path,
        video=video,
        pretrained=pretrained,
        tags=tags,
        evaluation=evaluation,
        budget_usd=budget,
    )


DIRECTED_SUFFIXES = ("_cw", "_ccw")


def _directed_tracks(top: _Section, track: str, training: Training, rollouts: Rollouts) -> None:
    """A ``_cw``/``_ccw`` world already fixes the direction; reverse_direction on top of it
    would drive the lap the other way round again, silently."""
    overrides = {o.worker: o for o in rollouts.overrides}
    for worker in range(rollouts.count):
        override = overrides.get(worker)
        world = (override.track if override is not None else None) or track
        explicit = override is not None and override.reverse_direction is not None
        reverse = (
            override.reverse_direction if explicit and override else training.reverse_direction
        )
        if not reverse or not world.endswith(DIRECTED_SUFFIXES):
            continue
        base = world.rsplit("_", 1)[0]
        field = (
            f"rollouts.overrides (worker {worker}).reverse_direction"
            if explicit
            else "training.reverse_direction"
        )
        top.fail(
            field,
            True,
            f"is not allowed with track {world!r} (worker {worker}): a _cw/_ccw world already "
            f"sets the direction, and reverse_direction would drive it the other way round; use "
            f"the base track {base!r} with reverse_direction, or the other variant",
        )
        return  # one line says it; the same fix holds for every worker


def _evaluation(section: _Section, track: str) -> Evaluation:
    raw = section.raw("tracks")
    tracks: list[str] = []
    if raw is _MISSING:
        tracks = [track]
    elif not isinstance(raw, list) or not raw:
        section.fail(section.name("tracks"), raw, "is not allowed: a list of simapp track names")
    else:
        items = _Section(
            {str(i): item for i, item in enumerate(raw)},
            file=section.file,
            path=section.name("tracks"),
            problems=section.problems,
        )
        tracks = [_track(items, str(i), "") for i in range(len(raw))]
        if len(set(tracks)) != len(tracks):
            section.fail(section.name("tracks"), raw, "is not allowed: a track is listed twice")
    directions = section.choice("directions")
    raw_checkpoint = section.raw("checkpoint")
    section.seen.discard("checkpoint")
    checkpoint = "best"
    if isinstance(raw_checkpoint, int) and not isinstance(raw_checkpoint, bool):
        checkpoint = str(section.integer("checkpoint", low=0, high=100000))
    elif raw_checkpoint is not _MISSING:
        checkpoint = section.choice("checkpoint", ("best", "last"))
    section.seen.add("checkpoint")
    resets = section.integer("resets")
    if resets == 1:
        section.fail(
            section.name("resets"), 1, "is not allowed: 0 or at least 2 (the simapp's minimum)"
        )
    evaluation = Evaluation(
        tracks=tuple(t for t in tracks if t),
        both_directions=directions == "both",
        trials=section.integer("trials"),
        checkpoint=checkpoint,
        continuous=section.boolean("continuous"),
        resets=resets,
        off_track_penalty=section.number("off_track_penalty"),
        collision_penalty=section.number("collision_penalty"),
    )
    section.finish()
    return evaluation


def _track(section: _Section, key: str, default: Any = _MISSING) -> str:
    raw = section.raw(key)
    worlds = contract.world_names()
    if raw is _MISSING:
        if default is None:
            section.fail(
                section.name(key),
                raw,
                f"is required: one of the {len(worlds)} simapp tracks, e.g. reInvent2019_track",
            )
        return default or ""
    if isinstance(raw, str) and raw in worlds:
        return raw
    close = difflib.get_close_matches(str(raw), worlds, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    section.fail(
        section.name(key),
        raw,
        f"is not a known track: use one of the {len(worlds)} simapp world names "
        f"(rollouts/data/worlds.txt){hint}",
    )
    return ""


def _race(section: _Section) -> Race:
    race_type = section.choice("type")
    oa_section = section.section("object_avoidance")
    h2b_section = section.section("head_to_bot")
    object_avoidance = head_to_bot = None
    if race_type == "OBJECT_AVOIDANCE":
        object_avoidance = _object_avoidance(oa_section)
    elif oa_section.data:
        section.fail(
            oa_section.path,
            dict(oa_section.data),
            f"is not allowed for race type {race_type}: only for OBJECT_AVOIDANCE",
        )
    if race_type == "HEAD_TO_BOT":
        head_to_bot = _head_to_bot(h2b_section)
    elif h2b_section.data:
        section.fail(
            h2b_section.path,
            dict(h2b_section.data),
            f"is not allowed for race type {race_type}: only for HEAD_TO_BOT",
        )
    section.finish()
    return Race(type=race_type, object_avoidance=object_avoidance, head_to_bot=head_to_bot)


_POSITION = re.compile(r"^\s*(0(?:\.\d+)?|1(?:\.0+)?)\s*,\s*(-1|1)\s*$")


def _object_avoidance(section: _Section) -> ObjectAvoidance:
    positions_raw = section.raw("object_positions")
    positions: list[str] = []
    if positions_raw is not _MISSING:
        if not isinstance(positions_raw, list) or not positions_raw:
            section.fail(
                section.name("object_positions"),
                positions_raw,
                'is not allowed: a non-empty list of "progress,lane" strings '
                "(progress 0..1, lane 1 inner or -1 outer)",
            )
        else:
            for i, item in enumerate(positions_raw):
                match = _POSITION.match(item) if isinstance(item, str) else None
                if not match:
                    section.fail(
                        f"{section.name('object_positions')}[{i}]",
                        item,
                        # bundle/markov/agent_ctrl/obstacles_agent_ctrl.py: -1 picks the
                        # outer lane, anything else the inner one.
                        'is not allowed: "progress,lane" with progress 0..1 and lane '
                        '1 (inner lane) or -1 (outer lane), e.g. "0.25,-1"',
                    )
                else:
                    positions.append(f"{match.group(1)},{match.group(2)}")
    result = ObjectAvoidance(
        # Listed positions set the count unless it is given.
        number_of_obstacles=section.integer(
            "number_of_obstacles", len(positions) or section.declared_default("number_of_obstacles")
        ),
        min_distance_between_obstacles=section.number("min_distance_between_obstacles"),
        randomize_obstacle_locations=section.boolean("randomize_obstacle_locations"),
        is_obstacle_bot_car=section.boolean("is_obstacle_bot_car"),
        obstacle_type=section.choice("obstacle_type"),
        object_positions=tuple(positions),
    )
    if (
        positions
        and "number_of_obstacles" in section.data
        and (section.data["number_of_obstacles"] != len(positions))
    ):
        section.fail(
            section.name("number_of_obstacles"),
            section.data["number_of_obstacles"],
            f"is not allowed: object_positions lists {len(positions)} obstacles and "
            "overrides the count; drop number_of_obstacles or make them agree",
        )
    section.finish()
    return result


def _head_to_bot(section: _Section) -> HeadToBot:
    result = HeadToBot(
        number_of_bot_cars=section.integer("number_of_bot_cars"),
        is_lane_change=section.boolean("is_lane_change"),
        lower_lane_change_time=section.number("lower_lane_change_time"),
        upper_lane_change_time=section.number("upper_lane_change_time"),
        lane_change_distance=section.number("lane_change_distance"),
        min_distance_between_bot_cars=section.number("min_distance_between_bot_cars"),
        randomize_bot_car_locations=section.boolean("randomize_bot_car_locations"),
        bot_car_speed=section.number("bot_car_speed"),
        penalty_seconds=section.number("penalty_seconds"),
    )
    if result.lower_lane_change_time > result.upper_lane_change_time:
        section.fail(
            section.name("lower_lane_change_time"),
            result.lower_lane_change_time,
            f"is not allowed: must not exceed upper_lane_change_time "
            f"({result.upper_lane_change_time:g})",
        )
    section.finish()
    return result


def _car(section: _Section) -> Car:
    car = Car(
        name=section.string("name"),
        color=section.choice("color"),
        shell=section.choice("shell"),
    )
    section.finish()
    return car


def _training(section: _Section) -> Training:
    training = Training(
        change_start_position=section.boolean("change_start_position"),
        alternate_driving_direction=section.boolean("alternate_driving_direction"),
        reverse_direction=section.boolean("reverse_direction"),
        start_position_offset=section.number("start_position_offset"),
        round_robin_advance_dist=section.number("round_robin_advance_dist"),
        enable_domain_randomization=section.boolean("enable_domain_randomization"),
        min_eval_trials=section.integer("min_eval_trials"),
        best_model_metric=section.choice("best_model_metric"),
        number_of_resets=section.integer("number_of_resets"),
    )
    section.finish()
    return training


def _trainer(section: _Section) -> Trainer:
    trainer = Trainer(
        instance_type=section.string("instance_type"),
        max_run_minutes=section.integer("max_run_minutes"),
        volume_gb=section.integer("volume_gb"),
    )
    section.finish()
    return trainer


def _rollouts(section: _Section, hyperparameters: Mapping[str, Any]) -> Rollouts:
    count = section.integer("count")
    episodes = hyperparameters.get("num_episodes_between_training")
    if isinstance(episodes, int) and count > episodes and "count" in section.data:
        section.fail(
            section.name("count"),
            count,
            f"is more than hyperparameters.num_episodes_between_training ({episodes}): "
            f"the episodes of one iteration are split over the workers, so workers "
            f"{episodes}..{count - 1} would exit at once and waste their compute; "
            f"use at most {episodes} rollouts or raise num_episodes_between_training",
        )
    vcpus = section.integer("vcpus")
    memory = section.integer("memory_mib")
    overrides_raw = section.raw("overrides")
    overrides: list[WorkerOverride] = []
    if overrides_raw is not _MISSING:
        if not isinstance(overrides_raw, list):
            section.fail(
                section.name("overrides"),
                overrides_raw,
                "is not allowed: a list of {worker: <index>, track: ...} mappings",
            )
        else:
            seen: set[int] = set()
            for i, item in enumerate(overrides_raw):
                sub = _Section(
                    item,
                    file=section.file,
                    path=f"{section.name('overrides')}[{i}]",
                    problems=section.problems,
                    model=spec_models.WorkerOverride,
                )
                worker = sub.integer(
                    "worker",
                    low=0,
                    high=max(count - 1, 0),
                    why=f" (a worker index below rollouts.count = {count})",
                )
                if worker in seen:
                    sub.fail(sub.name("worker"), worker, "is not allowed: worker listed twice")
                override = WorkerOverride(
                    worker=worker,
                    track=_track(sub, "track", "") or None,
                    reverse_direction=_optional_bool(sub, "reverse_direction"),
                    change_start_position=_optional_bool(sub, "change_start_position"),
                    alternate_driving_direction=_optional_bool(sub, "alternate_driving_direction"),
                )
                sub.finish()
                if isinstance(worker, int):  # a bad index is already reported above
                    seen.add(worker)
                    overrides.append(override)
    on_failure = section.choice("on_failure")
    max_restarts = section.integer("max_restarts")
    stall_minutes = section.integer("stall_minutes")
    section.finish()
    return Rollouts(
        count=count,
        vcpus=vcpus,
        memory_mib=memory,
        overrides=tuple(sorted(overrides, key=lambda o: o.worker)),
        on_failure=on_failure,
        max_restarts=max_restarts,
        stall_minutes=stall_minutes,
    )


def _optional_bool(section: _Section, key: str) -> bool | None:
    if key not in section.data:
        section.seen.add(key)
        return None
    return section.boolean(key, None)


def _pretrained(section: _Section, experiment: str) -> Pretrained:
    has = {key for key in ("prefix", "experiment", "run") if key in section.data}
    section.seen.add("prefix")  # read below only when given; allowed all the same
    prefix = None
    if "prefix" in has:
        prefix = section.string("prefix", None)
        if has & {"experiment", "run"}:
            section.fail(
                section.name("prefix"),
                prefix,
                "is not allowed together with experiment or run: name a model prefix, or an "
                "experiment's run",
            )
    other = section.string("experiment", experiment)
    run = section.string("run")
    if prefix is None and "run" in has and run != "latest" and not run.startswith(f"{other}-"):
        section.fail(
            section.name("run"),
            run,
            f"is not a run of experiment {other!r} (its ids start {other}-)",
        )
    checkpoint = section.choice("checkpoint")
    section.finish()
    if prefix is not None or not has:
        if not has:
            section.fail(section.path, None, "needs prefix, or experiment and/or run (run: latest)")
        return Pretrained(prefix=prefix or "experiments/unknown", checkpoint=checkpoint)
    return Pretrained(experiment=other, run=run, checkpoint=checkpoint)


def _tags(top: _Section) -> dict[str, str]:
    raw = top.raw("tags")
    if raw is _MISSING or raw is None:
        return {}
    if not isinstance(raw, Mapping):
        top.fail("tags", raw, "is not allowed: a mapping of tag names to string values")
        return {}
    if len(raw) > MAX_USER_TAGS:
        top.fail("tags", f"{len(raw)} tags", f"is too many: at most {MAX_USER_TAGS}")
    tags: dict[str, str] = {}
    for key, value in sorted(raw.items(), key=lambda kv: str(kv[0])):
        if (
            not isinstance(key, str)
            or not TAG_KEY_PATTERN.match(key)
            or key.lower().startswith(("aws:", "rollouts:"))
        ):
            top.fail(
                f"tags.{key}",
                key,
                "is not an allowed tag name: 1-128 of A-Z a-z 0-9 space _ . : / = + -, "
                "not starting with 'aws:' or 'rollouts:' (reserved)",
            )
        elif (
            not isinstance(value, str | int | float)
            or isinstance(value, bool)
            or not TAG_VALUE_PATTERN.match(str(value))
        ):
            top.fail(
                f"tags.{key}",
                value,
                "is not allowed: at most 256 of A-Z a-z 0-9 space _ . : / = + -",
            )
        else:
            tags[key] = str(value)
    return tags


# ----------------------------------------------------------------------------- referenced files


def _json_or_inline(top: _Section, key: str, base: Path) -> tuple[Any, str]:
    """A field that is either a path to a JSON file (relative to the experiment) or inline."""
    raw = top.raw(key)
    if raw is _MISSING:
        return _MISSING, key
    if isinstance(raw, str):
        file = (base / raw).resolve()
        try:
            return json.loads(file.read_text(encoding="utf-8")), f"{key} ({raw})"
        except OSError as error:
            top.fail(
                key,
                raw,
                f"cannot be read: {error.strerror} (paths are relative to the experiment file)",
            )
        except UnicodeDecodeError as error:
            top.fail(key, raw, f"is not UTF-8 text (byte {error.start})")
        except json.JSONDecodeError as error:
            top.fail(key, raw, f"is not valid JSON: {error.msg} at line {error.lineno}")
        return None, key
    if isinstance(raw, Mapping):
        return raw, key
    top.fail(key, raw, "is not allowed: a path to a JSON file or an inline mapping")
    return None, key


def _hyperparameters(top: _Section, base: Path) -> dict[str, Any]:
    raw, label = _json_or_inline(top, "hyperparameters", base)
    values: dict[str, Any] = dict(contract.DEFAULT_HYPERPARAMETERS)
    if raw is _MISSING or raw is None:
        return values
    if not isinstance(raw, Mapping):
        top.fail(label, raw, "is not allowed: a JSON object of hyperparameters")
        return values
    section = _Section(
        raw,
        file=top.file,
        path="hyperparameters",
        problems=top.problems,
        model=spec_models.Hyperparameters,
    )
    # Each key read as its model field declares it (rollouts.spec_models.Hyperparameters).
    readers = {int: section.integer, float: section.number, str: section.choice}
    for key, declared in spec_models.Hyperparameters.model_fields.items():
        values[key] = readers[declared.annotation](key)  # type: ignore[index, operator]
    if values["batch_size"] not in contract.BATCH_SIZES and "batch_size" in raw:
        section.fail(
            "hyperparameters.batch_size",
            values["batch_size"],
            f"is not allowed: one of {', '.join(map(str, contract.BATCH_SIZES))}",
        )
    section.finish()
    return values


def _model_metadata(top: _Section, base: Path) -> dict[str, Any]:
    raw, _label = _json_or_inline(top, "model_metadata", base)
    if raw is _MISSING:
        top.fail(
            "model_metadata",
            raw,
            "is required: a path to model_metadata.json (relative "
            "to the experiment file) or an inline mapping",
        )
        return {}
    if raw is None:
        return {}
    section = _Section(
        raw,
        file=top.file,
        path="model_metadata",
        problems=top.problems,
        model=spec_models.ModelMetadata,
    )
    space_type = section.choice("action_space_type")
    space = section.raw("action_space")
    _check_action_space(section, space_type, space)
    sensors = section.raw("sensor")
    _check_sensors(section, sensors)
    network = section.choice("neural_network")
    algorithm = section.choice("training_algorithm")
    version = section.raw("version")
    if version is not _MISSING and not (
        isinstance(version, str | int) and not isinstance(version, bool) and str(version).isdigit()
    ):
        section.fail("model_metadata.version", version, 'is not allowed: a version number like "5"')
    # Keep a few keys the simapp accepts but this project does not interpret.
    for passthrough in ("preprocess_type", "regional_parameters", "lidar_clipping"):
        section.raw(passthrough)
    section.finish()
    metadata = dict(raw)
    metadata.setdefault("neural_network", network)
    metadata.setdefault("training_algorithm", algorithm)
    if version is not _MISSING:
        metadata["version"] = str(version)
    return metadata


def _check_action_space(section: _Section, space_type: str, space: Any) -> None:
    where = "model_metadata.action_space"
    if space is _MISSING:
        section.fail(where, space, "is required")
        return
    ranges = {
        "steering_angle": (-contract.MAX_STEERING_ANGLE, contract.MAX_STEERING_ANGLE),
        "speed": (0.1, contract.MAX_SPEED),
    }
    if space_type == "discrete":
        if not isinstance(space, list) or not space:
            section.fail(
                where,
                space,
                "is not allowed: a discrete action space is a non-empty "
                "list of {steering_angle, speed}",
            )
            return
        for i, action in enumerate(space):
            if not isinstance(action, Mapping):
                section.fail(f"{where}[{i}]", action, "is not allowed: {steering_angle, speed}")
                continue
            for key, (low, high) in ranges.items():
                value = action.get(key, _MISSING)
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not (low <= value <= high)
                ):
                    section.fail(
                        f"{where}[{i}].{key}",
                        value,
                        f"is not allowed: a number from {low:g} to {high:g}",
                    )
    elif space_type == "continuous":
        if not isinstance(space, Mapping):
            section.fail(
                where,
                space,
                "is not allowed: a continuous action space is "
                "{steering_angle: {low, high}, speed: {low, high}}",
            )
            return
        for key, (low, high) in ranges.items():
            bounds = space.get(key)
            lo = bounds.get("low") if isinstance(bounds, Mapping) else None
            hi = bounds.get("high") if isinstance(bounds, Mapping) else None
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)):
                section.fail(
                    f"{where}.{key}", bounds, "is not allowed: {low: <number>, high: <number>}"
                )
            elif not (low <= lo < hi <= high):  # type: ignore[operator]
                section.fail(
                    f"{where}.{key}",
                    bounds,
                    f"is not allowed: need {low:g} <= low < high <= {high:g}",
                )


def _check_sensors(section: _Section, sensors: Any) -> None:
    where = "model_metadata.sensor"
    allowed = contract.CAMERA_SENSORS + contract.LIDAR_SENSORS
    if sensors is _MISSING:
        section.fail(where, sensors, "is required: e.g. [FRONT_FACING_CAMERA]")
        return
    if not isinstance(sensors, list) or not all(isinstance(s, str) for s in sensors):
        section.fail(where, sensors, "is not allowed: a list of sensor names")
        return
    unknown = [s for s in sensors if s not in allowed]
    cameras = [s for s in sensors if s in contract.CAMERA_SENSORS]
    lidars = [s for s in sensors if s in contract.LIDAR_SENSORS]
    if unknown:
        section.fail(
            where,
            sensors,
            f"is not allowed: unknown {', '.join(unknown)}; sensors are {', '.join(allowed)}",
        )
    elif len(cameras) != 1 or len(lidars) > 1:
        section.fail(
            where,
            sensors,
            "is not allowed: exactly one camera "
            f"({', '.join(contract.CAMERA_SENSORS)}) and at most one of "
            f"{', '.join(contract.LIDAR_SENSORS)}",
        )


def _reward_function(top: _Section, base: Path) -> tuple[Path, str]:
    raw = top.raw("reward_function")
    if raw is _MISSING or not isinstance(raw, str):
        top.fail(
            "reward_function",
            raw,
            "is required: the path of a Python file defining "
            "reward_function(params), relative to the experiment file",
        )
        return Path(), ""
    path = (base / raw).resolve()
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as error:
        top.fail("reward_function", raw, f"cannot be read: {error.strerror}")
        return path, ""
    except UnicodeDecodeError as error:
        top.fail("reward_function", raw, f"is not UTF-8 text (byte {error.start})")
        return path, ""
    try:
        module = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        top.fail("reward_function", raw, f"is not valid Python: {error.msg} at line {error.lineno}")
        return path, ""
    functions = {node.name: node for node in module.body if isinstance(node, ast.FunctionDef)}
    function = functions.get("reward_function")
    if function is None:
        top.fail("reward_function", raw, "does not define reward_function(params) at top level")
    elif len(function.args.args) != 1:
        top.fail(
            "reward_function",
            raw,
            "defines reward_function with "
            f"{len(function.args.args)} arguments: it must take "
            "exactly one (params)",
        )
    return path, source


def iter_problems(error: SpecError) -> Iterator[str]:
    for problem in error.problems:
        yield str(problem)
