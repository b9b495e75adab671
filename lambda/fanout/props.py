"""Parse and validate the custom resource's properties (docs/fanout-contract.md).

CloudFormation passes every scalar as a string, lists as lists and maps as dicts. Parsing is strict:
an unknown key is as much a contract drift as a missing one, and catching it here means nothing has
started yet. Each error names the property path, the value received and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from .errors import PropertyError

MAX_ROLLOUTS = 1000
EXPERIMENT_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
# S3 bucket names: 3-63 chars of lowercase letters, digits, dots and hyphens.
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ARN_RE = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$")
IAM_ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
# Track and stream names end up in comma-joined lists and in environment variables.
# The prefix lands in single-quoted YAML values: no quotes, spaces or line breaks.
PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*()-](?:[A-Za-z0-9!_.*()/-]*[A-Za-z0-9!_.*()-])?$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
SUBNET_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
SECURITY_GROUP_RE = re.compile(r"^sg-[0-9a-f]{8,17}$")
# The one tag rule: the characters every service we tag accepts (the intersection of SageMaker's,
# Batch's and RoboMaker's tag patterns, i.e. RoboMaker's), keys 1..128 and values 0..256 long.
TAG_RE = re.compile(r"^[A-Za-z0-9 _.:/=+\-]*$")
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
RESERVED_TAG_PREFIXES = ("aws:", "rollouts:")  # compared case-insensitively
PRETRAINED_CHECKPOINTS = ("last", "best")
# Tags the Lambda adds itself; the user may add up to this many fewer than the 50 allowed.
PROJECT_TAG_COUNT = 2
MAX_TAGS = 50

Backend = Literal["batch", "robomaker"]
WaitFor = Literal["ACCEPTED", "RUNNING"]
ComputeType = Literal["CPU", "GPU_AND_CPU"]
AppForm = Literal["bundle", "container"]
RUN_REF_RE = re.compile(r"^(latest|[a-z][a-z0-9-]{0,39}-[0-9a-f]{8})$")


@dataclass(frozen=True)
class TrainerProps:
    image_uri: str
    role_arn: str
    instance_type: str
    volume_size_gb: int
    max_runtime_seconds: int
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    pretrained_bucket: str | None = None
    pretrained_prefix: str | None = None
    pretrained_checkpoint: str | None = None  # "last" | "best"; None: the image's default
    # "latest" or a run id: pretrained_prefix is then an experiment prefix and the model is that
    # run's (<prefix>/runs/<run id>/model/); None: pretrained_prefix is the model's own prefix.
    pretrained_run: str | None = None


@dataclass(frozen=True)
class BatchProps:
    job_queue_arn: str
    job_definition_arn: str
    attempt_duration_seconds: int
    vcpus: int
    memory_mib: int


@dataclass(frozen=True)
class RoboMakerProps:
    simulation_application_arn: str
    role_arn: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    max_job_duration_seconds: int
    simulation_unit_limit: int
    compute_type: ComputeType
    assign_public_ip: bool
    app_form: AppForm = "bundle"


@dataclass(frozen=True)
class RunProps:
    experiment: str
    backend: Backend
    bucket: str
    prefix: str
    files_bucket: str
    files_key: str
    rollout_count: int
    worlds: tuple[str, ...]
    video_streams: tuple[str, ...]
    wait_for: WaitFor
    trainer: TrainerProps
    batch: BatchProps | None
    robomaker: RoboMakerProps | None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def video_enabled(self) -> bool:
        return bool(self.video_streams)

    def video_stream(self, worker: int) -> str:
        return self.video_streams[worker] if self.video_streams else ""


# `rollouts plan --requests` plans offline: deploy-time values are visible "<placeholders>".
OFFLINE_PLACEHOLDER_RE = re.compile(r"^<[a-z0-9 -]+>$")


class _Reader:
    """Typed access to one properties map, with the path used in error messages."""

    def __init__(
        self, raw: Any, path: str, allowed: Sequence[str], *, placeholders: bool = False
    ) -> None:
        if not isinstance(raw, Mapping):
            raise PropertyError(f"{path or 'Properties'} must be a map, got {_show(raw)}")
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise PropertyError(
                f"unknown property {self._join(path, unknown[0])}; allowed: {', '.join(allowed)}"
            )
        self.raw = raw
        self.path = path
        self.placeholders = placeholders

    def _placeholder(self, value: Any) -> bool:
        return (
            self.placeholders
            and isinstance(value, str)
            and bool(OFFLINE_PLACEHOLDER_RE.match(value))
        )

    @staticmethod
    def _join(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def name(self, key: str) -> str:
        return self._join(self.path, key)

    def text(self, key: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.optional_text(key, pattern, what)
        if value is None:
            raise PropertyError(f"missing property {self.name(key)} ({what or 'a string'})")
        return value

    def optional_text(
        self, key: str, pattern: re.Pattern[str] | None = None, what: str = ""
    ) -> str | None:
        value = self.raw.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise PropertyError(f"{self.name(key)} must be a string, got {_show(value)}")
        if pattern is not None and not pattern.match(value) and not self._placeholder(value):
            raise PropertyError(
                f"{self.name(key)} is {_show(value)}; allowed: {what or pattern.pattern}"
            )
        return value

    def choice(self, key: str, allowed: Sequence[str], default: str | None = None) -> str:
        value = self.optional_text(key)
        if value is None and default is not None:
            return default
        if value is None or value not in allowed:
            shown = "missing" if value is None else f"is {_show(value)}"
            raise PropertyError(f"{self.name(key)} {shown}; allowed: {' | '.join(allowed)}")
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.raw.get(key)
        if value is None or value == "":
            raise PropertyError(f"missing property {self.name(key)} (an integer {low}..{high})")
        # CloudFormation turns numbers into strings; accept both, never bools or floats.
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise PropertyError(f"{self.name(key)} must be an integer, got {_show(value)}")
        text = str(value).strip()
        # Bounded before int(): a number of thousands of digits is out of range, not a
        # ValueError of Python's integer-string conversion limit.
        if not re.fullmatch(r"-?\d{1,18}", text):
            raise PropertyError(f"{self.name(key)} is {_show(value)}; allowed: {low}..{high}")
        number = int(text)
        if not low <= number <= high:
            raise PropertyError(f"{self.name(key)} is {number}; allowed: {low}..{high}")
        return number

    def text_list(
        self,
        key: str,
        pattern: re.Pattern[str],
        what: str,
        low: int,
        high: int,
        *,
        required: bool = True,
    ) -> tuple[str, ...]:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise PropertyError(f"missing property {self.name(key)} (a list of {what})")
            value = []
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise PropertyError(f"{self.name(key)} must be a list, got {_show(value)}")
        if not low <= len(value) <= high:
            raise PropertyError(
                f"{self.name(key)} has {len(value)} entries; allowed: {low}..{high} {what}"
            )
        for i, item in enumerate(value):
            if not isinstance(item, str) or not (pattern.match(item) or self._placeholder(item)):
                raise PropertyError(f"{self.name(key)}[{i}] is {_show(item)}; allowed: {what}")
        return tuple(value)

    def submap(self, key: str, allowed: Sequence[str]) -> _Reader:
        value = self.raw.get(key)
        if value is None:
            raise PropertyError(
                f"missing property {self.name(key)} (a map of {', '.join(allowed)})"
            )
        return _Reader(value, self.name(key), allowed, placeholders=self.placeholders)


def _show(value: Any) -> str:
    """A short, single-line rendering of a received value for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


TOP_LEVEL_KEYS = (
    "ServiceToken",
    "Experiment",
    "Backend",
    "Bucket",
    "Prefix",
    "FilesBucket",
    "FilesKey",
    "RolloutCount",
    "Worlds",
    "VideoStreams",
    "WaitFor",
    "Trainer",
    "Batch",
    "RoboMaker",
    "Tags",
)
TRAINER_KEYS = (
    "ImageUri",
    "RoleArn",
    "InstanceType",
    "VolumeSizeGb",
    "MaxRuntimeSeconds",
    "Subnets",
    "SecurityGroups",
    "PretrainedBucket",
    "PretrainedPrefix",
    "PretrainedCheckpoint",
    "PretrainedRun",
)
BATCH_KEYS = ("JobQueueArn", "JobDefinitionArn", "AttemptDurationSeconds", "Vcpus", "MemoryMib")
ROBOMAKER_KEYS = (
    "SimulationApplicationArn",
    "RoleArn",
    "Subnets",
    "SecurityGroups",
    "MaxJobDurationSeconds",
    "SimulationUnitLimit",
    "ComputeType",
    "AssignPublicIp",
    "AppForm",
)


def parse_properties(raw: Any, *, placeholders: bool = False) -> RunProps:
    """Validate ``ResourceProperties``; raise :class:`PropertyError` on the first problem.
    ``placeholders`` (offline planning only) lets ``<name>`` stand for a deploy-time value."""
    top = _Reader(raw, "", TOP_LEVEL_KEYS, placeholders=placeholders)
    experiment = top.text("Experiment", EXPERIMENT_RE, "lowercase name ^[a-z][a-z0-9-]{0,39}$")
    backend = top.choice("Backend", ("batch", "robomaker"))
    prefix = top.text(
        "Prefix",
        PREFIX_RE,
        "a key prefix of letters, digits and ! _ . * ( ) / -, without leading or trailing '/'",
    )
    count = top.integer("RolloutCount", 1, MAX_ROLLOUTS)
    worlds = top.text_list("Worlds", NAME_RE, "track names [A-Za-z0-9_.-]", count, count)
    streams = top.text_list(
        "VideoStreams", NAME_RE, "stream names [A-Za-z0-9_.-]", 0, count, required=False
    )
    if streams and len(streams) != count:
        raise PropertyError(
            f"VideoStreams has {len(streams)} entries; allowed: 0 (video off) or "
            f"RolloutCount={count}"
        )

    trainer = _parse_trainer(top.submap("Trainer", TRAINER_KEYS))
    batch = robomaker = None
    other = "RoboMaker" if backend == "batch" else "Batch"
    if top.raw.get(other) not in (None, {}):
        raise PropertyError(f"{other} must not be set when Backend is {backend!r}")
    if backend == "batch":
        batch = _parse_batch(top.submap("Batch", BATCH_KEYS))
    else:
        robomaker = _parse_robomaker(top.submap("RoboMaker", ROBOMAKER_KEYS))

    return RunProps(
        experiment=experiment,
        backend=cast(Backend, backend),
        bucket=top.text("Bucket", BUCKET_RE, "an S3 bucket name"),
        prefix=prefix,
        files_bucket=top.text("FilesBucket", BUCKET_RE, "an S3 bucket name"),
        files_key=top.text("FilesKey"),
        rollout_count=count,
        worlds=worlds,
        video_streams=streams,
        wait_for=cast(WaitFor, top.choice("WaitFor", ("ACCEPTED", "RUNNING"), default="ACCEPTED")),
        trainer=trainer,
        batch=batch,
        robomaker=robomaker,
        tags=_parse_tags(top.raw.get("Tags")),
    )


def _parse_trainer(r: _Reader) -> TrainerProps:
    pretrained_bucket = r.optional_text("PretrainedBucket", BUCKET_RE, "an S3 bucket name")
    pretrained_prefix = r.optional_text("PretrainedPrefix")
    if (pretrained_bucket is None) != (pretrained_prefix is None):
        raise PropertyError(
            "Trainer.PretrainedBucket and Trainer.PretrainedPrefix must be set together "
            f"(got bucket={pretrained_bucket!r}, prefix={pretrained_prefix!r})"
        )
    pretrained_run = r.optional_text(
        "PretrainedRun", RUN_REF_RE, "latest or a run id (<experiment>-<8 hex digits>)"
    )
    if pretrained_run is not None and pretrained_bucket is None:
        raise PropertyError(
            "Trainer.PretrainedRun needs Trainer.PretrainedBucket and Trainer.PretrainedPrefix"
        )
    checkpoint = None
    if r.optional_text("PretrainedCheckpoint") is not None:
        checkpoint = r.choice("PretrainedCheckpoint", PRETRAINED_CHECKPOINTS)
        if pretrained_bucket is None:
            raise PropertyError(
                "Trainer.PretrainedCheckpoint needs Trainer.PretrainedBucket and "
                "Trainer.PretrainedPrefix"
            )
    return TrainerProps(
        image_uri=r.text("ImageUri", re.compile(r"^\S+$"), "a container image URI"),
        role_arn=r.text("RoleArn", IAM_ROLE_RE, "an IAM role ARN"),
        instance_type=r.text(
            "InstanceType", re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$"), "ml.<family>.<size>"
        ),
        volume_size_gb=r.integer("VolumeSizeGb", 1, 16384),
        # SageMaker's limit for MaxRuntimeInSeconds is 28 days.
        max_runtime_seconds=r.integer("MaxRuntimeSeconds", 60, 28 * 24 * 3600),
        subnets=r.text_list("Subnets", SUBNET_RE, "subnet ids", 1, 16),
        security_groups=r.text_list(
            "SecurityGroups", SECURITY_GROUP_RE, "security group ids", 1, 5
        ),
        pretrained_bucket=pretrained_bucket,
        pretrained_prefix=pretrained_prefix,
        pretrained_checkpoint=checkpoint,
        pretrained_run=pretrained_run,
    )


def _parse_batch(r: _Reader) -> BatchProps:
    return BatchProps(
        job_queue_arn=r.text("JobQueueArn", ARN_RE, "a Batch job queue ARN"),
        job_definition_arn=r.text("JobDefinitionArn", ARN_RE, "a Batch job definition ARN"),
        # Batch's minimum attempt timeout is 60 s.
        attempt_duration_seconds=r.integer("AttemptDurationSeconds", 60, 14 * 24 * 3600),
        # Per-rollout compute from the experiment file, overriding the job definition's.
        vcpus=r.integer("Vcpus", 1, 96),
        memory_mib=r.integer("MemoryMib", 2048, 393216),
    )


def _parse_robomaker(r: _Reader) -> RoboMakerProps:
    return RoboMakerProps(
        simulation_application_arn=r.text("SimulationApplicationArn", ARN_RE, "an ARN"),
        role_arn=r.text("RoleArn", IAM_ROLE_RE, "an IAM role ARN"),
        subnets=r.text_list("Subnets", SUBNET_RE, "subnet ids", 1, 16),
        security_groups=r.text_list(
            "SecurityGroups", SECURITY_GROUP_RE, "security group ids", 1, 5
        ),
        # RoboMaker simulation jobs ran at most 14 days.
        max_job_duration_seconds=r.integer("MaxJobDurationSeconds", 60, 14 * 24 * 3600),
        simulation_unit_limit=r.integer("SimulationUnitLimit", 1, 15),
        compute_type=cast(ComputeType, r.choice("ComputeType", ("CPU", "GPU_AND_CPU"))),
        # Rollouts in public subnets need a public IP to reach the service endpoints.
        assign_public_ip=r.choice("AssignPublicIp", ("true", "false")) == "true",
        # bundle: the workshop's ROS 1 bundle; container: the simapp 6.x image (ROS 2).
        app_form=cast(AppForm, r.choice("AppForm", ("bundle", "container"), default="bundle")),
    )


def _parse_tags(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise PropertyError(f"Tags must be a map of strings, got {_show(raw)}")
    limit = MAX_TAGS - PROJECT_TAG_COUNT
    if len(raw) > limit:
        raise PropertyError(f"Tags has {len(raw)} entries; allowed: at most {limit}")
    tags: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not 1 <= len(key) <= TAG_KEY_MAX or not TAG_RE.match(key):
            raise PropertyError(
                f"Tags key {_show(key)} is invalid; allowed: 1-{TAG_KEY_MAX} of {TAG_RE.pattern}"
            )
        if key.lower().startswith(RESERVED_TAG_PREFIXES):
            raise PropertyError(
                f"Tags key {key!r} uses a reserved prefix ({', '.join(RESERVED_TAG_PREFIXES)})"
            )
        if not isinstance(value, str) or len(value) > TAG_VALUE_MAX or not TAG_RE.match(value):
            raise PropertyError(
                f"Tags.{key} is {_show(value)}; allowed: 0-{TAG_VALUE_MAX} of {TAG_RE.pattern}"
            )
        tags[key] = value
    return tags
