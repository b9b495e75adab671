"""On the batch backend rollouts are Fargate tasks: only Fargate's sizes, and never more vCPUs in
one experiment than the platform's maxVcpus. Synth and `rollouts plan` refuse the rest (exit 2)
naming the file, the field and what is allowed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from app_support import run_app

from rollouts.fargate import FARGATE_SIZES, fargate_memory_choices, rollout_compute_problems
from rollouts.platform import load_platform_config
from rollouts.spec import load_experiment

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "experiments" / "models" / "discrete-5-actions.json"
CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]


def write(tmp_path: Path, rollouts: str) -> Path:
    (tmp_path / "reward.py").write_text("def reward_function(params):\n    return 1.0\n")
    path = tmp_path / "sizes.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: sizes
            track: reInvent2019_track
            reward_function: reward.py
            model_metadata: {MODEL}
            hyperparameters: {{num_episodes_between_training: 40}}
            rollouts: {rollouts}
            """
        )
    )
    return path


def problems(tmp_path: Path, rollouts: str, **context: str) -> list[str]:
    spec = load_experiment(write(tmp_path, rollouts))
    found = rollout_compute_problems(
        spec, load_platform_config({**CONTEXT, **context}), file="sizes.yaml"
    )
    return [str(problem) for problem in found]


def test_the_table_is_the_documented_one() -> None:
    # AWS Batch API reference, ResourceRequirement (Fargate), stated again here.
    assert list(FARGATE_SIZES) == [1, 2, 4, 8, 16]
    assert (min(fargate_memory_choices(4)), max(fargate_memory_choices(4))) == (8192, 30720)
    assert list(fargate_memory_choices(8))[:3] == [16384, 20480, 24576]
    assert len(fargate_memory_choices(16)) == 12


@pytest.mark.parametrize(
    "rollouts", ["{vcpus: 1, memory_mib: 2048}", "{vcpus: 4, memory_mib: 30720}", "{count: 3}"]
)
def test_fargate_sizes_load(rollouts: str, tmp_path: Path) -> None:
    assert problems(tmp_path, rollouts) == []


@pytest.mark.parametrize(
    ("rollouts", "message"),
    [
        (
            "{vcpus: 3, memory_mib: 8192}",
            "sizes.yaml: rollouts.vcpus: 3 is not allowed on the batch backend: rollouts run as "
            "Fargate tasks of 1, 2, 4, 8, 16 vCPUs",
        ),
        (
            "{vcpus: 4, memory_mib: 31744}",
            "sizes.yaml: rollouts.memory_mib: 31744 is not a Fargate size for 4 vCPUs: "
            "8192 to 30720 in steps of 1024",
        ),
        (
            "{vcpus: 8, memory_mib: 18432}",
            "sizes.yaml: rollouts.memory_mib: 18432 is not a Fargate size for 8 vCPUs: "
            "16384 to 61440 in steps of 4096",
        ),
        (
            "{count: 40, vcpus: 8, memory_mib: 16384}",
            "sizes.yaml: rollouts.count: 40 x 8 vCPUs = 320 is more than the platform's maxVcpus "
            "(256), the most one experiment may use at once",
        ),
    ],
)
def test_other_sizes_are_refused(rollouts: str, message: str, tmp_path: Path) -> None:
    assert problems(tmp_path, rollouts) == [message]


def test_robomaker_has_no_fargate_limits(tmp_path: Path) -> None:
    assert problems(tmp_path, "{vcpus: 3, memory_mib: 9000}", backend="robomaker") == []


def test_synth_and_plan_refuse_a_size_fargate_does_not_have(tmp_path: Path) -> None:
    path = write(tmp_path, "{vcpus: 6, memory_mib: 12288}")
    synth = run_app(json.dumps({"experiment": str(path)}), cwd=REPO, outdir=tmp_path / "out")
    assert synth.returncode == 2, synth.stderr
    assert "rollouts.vcpus: 6 is not allowed on the batch backend" in synth.stderr
    assert not (tmp_path / "out").exists()
    plan = subprocess.run(
        [sys.executable, "-m", "rollouts", "plan", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert plan.returncode == 2, plan.stderr
    assert f"{path}: rollouts.vcpus: 6 is not allowed on the batch backend" in plan.stderr
    assert plan.stdout == ""


@pytest.mark.parametrize(
    ("rollouts", "field"),
    [
        ("{vcpus: 3, memory_mib: 8192}", "rollouts.vcpus"),
        ("{vcpus: 4, memory_mib: 4096}", "rollouts.memory_mib"),
    ],
)
def test_validate_refuses_what_plan_and_synth_refuse(
    rollouts: str, field: str, tmp_path: Path
) -> None:
    path = write(tmp_path, rollouts)
    result = subprocess.run(
        [sys.executable, "-m", "rollouts", "validate", str(path), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    [problem] = json.loads(result.stdout)["files"][0]["problems"]
    assert problem["field"] == field
