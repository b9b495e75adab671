"""The rollout container's entrypoint: an array child picks its own track, params and stream."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "simapp" / "rollout-entrypoint.sh"


def run(index: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "ROLLOUT_WORLD_NAMES": "reInvent2019_track,2022_april_open,reInvent2019_wide",
        "ROLLOUT_YAML_NAMES": "training_params_0.yaml,training_params_1.yaml,training_params_2.yaml",
        "ROLLOUT_VIDEO_STREAMS": "rollouts-x-0,rollouts-x-1,rollouts-x-2",
        # Instead of the simapp: print what the simapp would see.
        "SIMAPP_ROLLOUT_COMMAND": 'echo "$ROLLOUT_IDX|$WORLD_NAME|$S3_YAML_NAME|$KINESIS_VIDEO_STREAM_NAME"',
        **env,
    }
    if index is not None:
        environment["AWS_BATCH_JOB_ARRAY_INDEX"] = index
    return subprocess.run(
        ["bash", str(ENTRYPOINT)], env=environment, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("index", ["0", "1", "2"])
def test_array_child_gets_its_own_values(index: str) -> None:
    i = int(index)
    tracks = ["reInvent2019_track", "2022_april_open", "reInvent2019_wide"]
    result = run(index)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"{i}|{tracks[i]}|training_params_{i}.yaml|rollouts-x-{i}"
    )


def test_single_job_and_shared_values() -> None:
    result = run(
        None,
        ROLLOUT_WORLD_NAMES="reInvent2019_track",
        ROLLOUT_YAML_NAMES="training_params.yaml",
        ROLLOUT_VIDEO_STREAMS="",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0|reInvent2019_track|training_params.yaml|"


def test_index_beyond_the_lists_fails_clearly() -> None:
    result = run("5")
    assert result.returncode == 64
    assert "rollout 5: list has only 3 entries" in result.stderr
