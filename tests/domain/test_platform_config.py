"""Platform settings: cdk.json is the one place with defaults; every bad value is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollouts.platform import SETTINGS, PlatformConfigError, load_platform_config

CONTEXT = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]


def test_cdk_json_has_every_setting_and_they_load() -> None:
    assert set(SETTINGS) <= set(CONTEXT)
    config = load_platform_config(CONTEXT)
    assert config.backend == "batch" and config.az_count == 2 and config.spot is True
    assert config.simapp_image == "awsdeepracercommunity/deepracer-simapp:6.0.5-cpu"


def test_command_line_strings_are_parsed() -> None:
    config = load_platform_config(
        {
            **CONTEXT,
            "backend": "robomaker",
            "azCount": "3",
            "spot": "false",
            "gpu": "true",
            "maxVcpus": "64",
        }
    )
    assert (config.az_count, config.spot, config.gpu, config.max_vcpus) == (3, False, True, 64)
    assert config.simapp_image_tag == "6.0.5-gpu"


def test_gpu_is_refused_where_rollouts_run_on_fargate() -> None:
    with pytest.raises(PlatformConfigError) as caught:
        load_platform_config({**CONTEXT, "backend": "batch", "gpu": "true"})
    assert str(caught.value) == (
        "cdk context 'gpu': True is not allowed: false with backend 'batch': its rollouts run "
        "as Fargate tasks, which have no GPUs (the trainer's instance type is chosen per "
        "experiment) (set it in cdk.json or -c gpu=...)"
    )


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("backend", "ec2", "one of batch, robomaker"),
        ("azCount", "7", "an integer from 2 to 6"),
        ("egress", "open", "one of public, nat, endpoints"),
        ("spot", "maybe", "true or false"),
        ("maxVcpus", 2.5, "an integer from 4 to 10000"),
        ("simappVersion", "latest", "a simapp release such as 6.0.5"),
        ("logRetentionDays", 10, "one of 1, 3, 5, 7, 14, 30"),
        ("waitFor", "DONE", "one of ACCEPTED, RUNNING"),
    ],
)
def test_bad_value_names_key_value_and_allowed(key: str, value: Any, allowed: str) -> None:
    with pytest.raises(PlatformConfigError) as caught:
        load_platform_config({**CONTEXT, key: value})
    message = str(caught.value)
    assert f"cdk context '{key}': {value!r} is not allowed: {allowed}" in message
    assert message.count("\n") == 0, "only the bad key is reported"


def test_missing_setting_points_to_cdk_json() -> None:
    context = {k: v for k, v in CONTEXT.items() if k not in ("spot", "gpu")}
    with pytest.raises(PlatformConfigError, match="cdk context is missing spot, gpu"):
        load_platform_config(context)
