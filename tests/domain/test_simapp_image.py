"""simapp/Dockerfile and the check it runs while it builds (no Docker needed: the Dockerfile is
read, and check-image.sh runs against a fake image tree)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIMAPP = REPO / "simapp"
CHECK = SIMAPP / "check-image.sh"
# Where deepracer-simapp 6.x installs markov (docker/files/ml-code/sage-train.sh's PYTHONPATH).
MARKOV = "/opt/amazon/install/sagemaker_rl_agent/lib/python3.12/site-packages/markov"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of simapp/Dockerfile, continuation lines joined."""
    text = (SIMAPP / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", "\n".join(x for x in text.splitlines() if not x.startswith("#")))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in text.splitlines()
        if line.strip()
    ]


def test_base_image_is_the_pinned_release() -> None:
    version = json.loads((REPO / "cdk.json").read_text())["context"]["simappVersion"]
    assert version == "6.0.5"  # deepracer-simapp's VERSION file and newest tag, v6.0.5
    args = [a for kind, a in instructions() if kind == "ARG" and a.startswith("SIMAPP_IMAGE=")]
    assert args == [f"SIMAPP_IMAGE=awsdeepracercommunity/deepracer-simapp:{version}-cpu"]


def test_markov_overrides_go_to_the_fixed_markov_directory() -> None:
    steps = instructions()
    assert ("ARG", f"MARKOV_DIR={MARKOV}") in steps
    assert not [a for kind, a in steps if kind == "RUN" and "import markov" in a], (
        "markov is not importable in a plain shell of the image"
    )
    copy = next(a for kind, a in steps if kind == "RUN" and "markov-overrides" in a)
    assert '"${MARKOV_DIR}/"' in copy


def test_the_build_checks_the_image_after_installing_the_wrapper() -> None:
    steps = instructions()
    wrapper = steps.index(("COPY", "taskset /usr/local/bin/taskset"))
    check = next(i for i, (kind, a) in enumerate(steps) if kind == "RUN" and "check-image.sh" in a)
    overrides = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "markov-overrides" in a)
    assert wrapper < check < overrides, "check with the wrapper in place, before any override"
    assert 'MARKOV_DIR="${MARKOV_DIR}" /opt/rollouts/check-image.sh' in steps[check][1]


def _image_tree(tmp_path: Path) -> dict[str, str]:
    """A fake image: every path check-image.sh relies on, and its environment overrides."""
    code = tmp_path / "opt/ml/code"
    install = tmp_path / "opt/amazon/install"
    launch = (
        install / "deepracer_simulation_environment/share/deepracer_simulation_environment/launch"
    )
    markov = install / "sagemaker_rl_agent/lib/python3.12/site-packages/markov"
    for folder in (code, launch, markov):
        folder.mkdir(parents=True)
    for path in (code / "run.sh", code / "sage-train.sh", markov / "training_worker.py"):
        path.write_text("")
    (markov / "rollout_worker.py").write_text("")
    (launch / "distributed_training.launch.py").write_text("")
    (launch / "empty_world.launch.py").write_text("cmd=['taskset', '-c', ...]\n")
    (install / "setup.bash").write_text("")
    bin_dir = tmp_path / "usr/local/bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "taskset").symlink_to(SIMAPP / "taskset")
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SIMAPP_CODE_DIR": str(code),
        "SIMAPP_INSTALL_DIR": str(install),
        "MARKOV_DIR": str(markov),
        "TASKSET_WRAPPER": str(bin_dir / "taskset"),
    }


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CHECK)], env=env, capture_output=True, text=True, check=False
    )


def test_a_complete_image_passes(tmp_path: Path) -> None:
    result = _check(_image_tree(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "simapp image checked" in result.stdout


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("opt/ml/code/run.sh", "rollout launcher (rollout-entrypoint.sh runs it)"),
        ("opt/ml/code/sage-train.sh", "distributed trainer (the job's SAGEMAKER_PROGRAM)"),
        (
            "opt/amazon/install/deepracer_simulation_environment/share/"
            "deepracer_simulation_environment/launch/distributed_training.launch.py",
            "rollout launch file",
        ),
        (
            "opt/amazon/install/sagemaker_rl_agent/lib/python3.12/site-packages/markov/"
            "training_worker.py",
            "markov package (trainer)",
        ),
    ],
)
def test_a_moved_entry_point_fails_the_build_by_name(
    tmp_path: Path, missing: str, named: str
) -> None:
    env = _image_tree(tmp_path)
    (tmp_path / missing).unlink()
    result = _check(env)
    assert result.returncode == 1
    assert f"  - {named}: {tmp_path / missing} is missing" in result.stderr


def test_a_taskset_ahead_of_the_wrapper_fails_the_build(tmp_path: Path) -> None:
    """If the ROS setup run.sh sources put another taskset first, Gazebo would be pinned to
    missing cores again: the build says so."""
    env = _image_tree(tmp_path)
    shadow = tmp_path / "opt/ros-bin"
    shadow.mkdir()
    (shadow / "taskset").write_text('#!/bin/sh\nexec /usr/bin/taskset "$@"\n')
    (shadow / "taskset").chmod(0o755)
    Path(env["SIMAPP_INSTALL_DIR"], "setup.bash").write_text(f'export PATH="{shadow}:$PATH"\n')
    result = _check(env)
    assert result.returncode == 1
    assert f"taskset resolves to '{shadow / 'taskset'}'" in result.stderr


def test_setup_scripts_that_read_unset_variables_do_not_break_the_check(tmp_path: Path) -> None:
    """ROS's setup.bash reads variables that may be unset; run.sh sources it without nounset."""
    env = _image_tree(tmp_path)
    Path(env["SIMAPP_INSTALL_DIR"], "setup.bash").write_text('echo "$SURELY_UNSET_VARIABLE"\n')
    result = _check(env)
    assert result.returncode == 0, result.stderr


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    env = _image_tree(tmp_path)
    (tmp_path / "opt/ml/code/run.sh").unlink()
    (tmp_path / "opt/ml/code/sage-train.sh").unlink()
    result = _check(env)
    assert result.returncode == 1
    assert result.stderr.count("\n  - ") == 2
