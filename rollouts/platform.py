"""Platform settings: one typed, validated object built from CDK context (``cdk.json`` + ``-c``).

Defaults live in one place, ``cdk.json`` under ``context``; every key can be overridden per synth
with ``-c key=value`` (values from the command line arrive as strings and are parsed here).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BACKENDS = ("batch", "robomaker")
EGRESS_MODES = ("public", "nat", "endpoints")
ROBOMAKER_APP_FORMS = ("bundle", "container")
SIMAPP_VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")

# The context keys this module reads. Their defaults live in one place: cdk.json's "context".
SETTINGS = (
    "backend",
    "azCount",
    "egress",
    "spot",
    "maxVcpus",
    "gpu",
    "simappVersion",
    "videoRetentionHours",
    "robomakerAppForm",
    "logRetentionDays",
    "waitFor",
    "notifyEmail",
)
# An address the run supervisor's topic mails each run outcome and action to ("" for none).
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class PlatformConfigError(ValueError):
    """A platform setting is invalid; the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class PlatformConfig:
    backend: str
    az_count: int
    egress: str
    spot: bool
    max_vcpus: int
    gpu: bool
    simapp_version: str
    video_retention_hours: int
    robomaker_app_form: str
    log_retention_days: int
    wait_for: str
    notify_email: str = ""

    @property
    def simapp_image_tag(self) -> str:
        return f"{self.simapp_version}-{'gpu' if self.gpu else 'cpu'}"

    @property
    def simapp_image(self) -> str:
        return f"awsdeepracercommunity/deepracer-simapp:{self.simapp_image_tag}"


LOG_RETENTION_CHOICES = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)


def _problem(key: str, value: Any, allowed: str) -> str:
    return f"cdk context '{key}': {value!r} is not allowed: {allowed} (set it in cdk.json or -c {key}=...)"


def _bool(key: str, value: Any, problems: list[str]) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(_problem(key, value, "true or false"))
    return False


def _int(key: str, value: Any, low: int, high: int, problems: list[str]) -> int:
    try:
        number = int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high or (isinstance(value, float)):
        problems.append(_problem(key, value, f"an integer from {low} to {high}"))
        return low
    return number


def _choice(key: str, value: Any, choices: tuple[str, ...], problems: list[str]) -> str:
    if value in choices:
        return str(value)
    problems.append(_problem(key, value, "one of " + ", ".join(choices)))
    return choices[0]


def load_platform_config(context: Mapping[str, Any]) -> PlatformConfig:
    """Build the platform config from CDK context values; raise listing every bad key."""
    missing = [key for key in SETTINGS if key not in context]
    if missing:
        raise PlatformConfigError(
            f"cdk context is missing {', '.join(missing)}: every platform setting has its "
            "default in cdk.json's \"context\" (restore them from the README's table)"
        )
    values = {key: context[key] for key in SETTINGS}
    problems: list[str] = []
    gpu = _bool("gpu", values["gpu"], problems)
    config = PlatformConfig(
        backend=_choice("backend", values["backend"], BACKENDS, problems),
        az_count=_int("azCount", values["azCount"], 2, 6, problems),
        egress=_choice("egress", values["egress"], EGRESS_MODES, problems),
        spot=_bool("spot", values["spot"], problems),
        max_vcpus=_int("maxVcpus", values["maxVcpus"], 4, 10000, problems),
        gpu=gpu,
        simapp_version=str(values["simappVersion"]),
        video_retention_hours=_int(
            "videoRetentionHours", values["videoRetentionHours"], 1, 87600, problems
        ),
        robomaker_app_form=_choice(
            "robomakerAppForm", values["robomakerAppForm"], ROBOMAKER_APP_FORMS, problems
        ),
        log_retention_days=_int("logRetentionDays", values["logRetentionDays"], 1, 3653, problems),
        wait_for=_choice("waitFor", values["waitFor"], ("ACCEPTED", "RUNNING"), problems),
        notify_email=str(values["notifyEmail"] or "").strip(),
    )
    if config.notify_email and not EMAIL_PATTERN.match(config.notify_email):
        problems.append(
            _problem(
                "notifyEmail",
                config.notify_email,
                'an e-mail address such as team@example.com, or "" for no e-mail',
            )
        )
    if not SIMAPP_VERSION_PATTERN.match(config.simapp_version):
        problems.append(
            _problem(
                "simappVersion",
                config.simapp_version,
                "a simapp release such as 6.0.5 (the image tag adds -cpu/-gpu)",
            )
        )
    if config.gpu and config.backend == "batch":
        problems.append(
            _problem(
                "gpu",
                True,
                "false with backend 'batch': its rollouts run as Fargate tasks, which have no "
                "GPUs (the trainer's instance type is chosen per experiment)",
            )
        )
    if config.log_retention_days not in LOG_RETENTION_CHOICES:
        problems.append(
            _problem(
                "logRetentionDays",
                config.log_retention_days,
                "one of " + ", ".join(map(str, LOG_RETENTION_CHOICES)),
            )
        )
    if problems:
        raise PlatformConfigError("\n".join(problems))
    return config


def unknown_context_keys(given: Mapping[str, Any], *, known: Mapping[str, Any]) -> list[str]:
    """Plain keys (no ``@`` feature flag, no ``:`` CDK or lookup key) that nothing reads: most
    likely a misspelt ``-c`` setting, which would otherwise be ignored without a word."""
    names = sorted(k for k in known if not k.startswith("@"))
    notes = []
    for key in sorted(given):
        if key.startswith("@") or ":" in key or key in known:
            continue
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; settings are {', '.join(names)}"
        notes.append(f"cdk context {key!r} is not a setting of this app and is ignored{hint}")
    return notes
