"""The rollout container's entrypoint: an array child picks its own track, params and stream,
starts the simapp's 6.x launcher, gets Gazebo going on any worker index, and passes on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

SIMAPP = Path(__file__).resolve().parents[2] / "simapp"
ENTRYPOINT = SIMAPP / "rollout-entrypoint.sh"
WRAPPER = SIMAPP / "taskset"
REAL_TASKSET = "/usr/bin/taskset"


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


# ------------------------------------------------------------------ the simapp 6.x launcher


def _fake_code_dir(tmp_path: Path, body: str) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    script = code / "run.sh"
    script.write_text(f"#!/usr/bin/env bash\n{body}\n")
    script.chmod(0o755)
    return code


def test_default_command_is_the_6x_run_script_with_the_distributed_launch_file(
    tmp_path: Path,
) -> None:
    code = _fake_code_dir(tmp_path, 'echo "args: $*"')
    result = run("1", SIMAPP_ROLLOUT_COMMAND="", SIMAPP_CODE_DIR=str(code))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "args: run distributed_training.launch.py"


def test_an_evaluation_leg_runs_the_evaluation_launch_file(tmp_path: Path) -> None:
    code = _fake_code_dir(tmp_path, 'echo "args: $* world=$WORLD_NAME yaml=$S3_YAML_NAME"')
    result = run(
        "1",
        SIMAPP_ROLLOUT_COMMAND="",
        SIMAPP_CODE_DIR=str(code),
        ROLLOUT_LAUNCH_FILE="evaluation.launch.py",
        ROLLOUT_WORLD_NAMES="Spain_track,Spain_track",
        ROLLOUT_YAML_NAMES="Spain_track/evaluation_params.yaml,Spain_track-reverse/evaluation_params.yaml",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "args: run evaluation.launch.py world=Spain_track "
        "yaml=Spain_track-reverse/evaluation_params.yaml"
    )


def test_any_other_launch_file_is_refused(tmp_path: Path) -> None:
    code = _fake_code_dir(tmp_path, 'echo "args: $*"')
    result = run(
        "0", SIMAPP_ROLLOUT_COMMAND="", SIMAPP_CODE_DIR=str(code), ROLLOUT_LAUNCH_FILE="x; rm -rf /"
    )
    assert result.returncode == 64
    assert "not allowed (distributed_training.launch.py or evaluation.launch.py)" in result.stderr
    assert "args:" not in result.stdout


def test_without_an_override_the_image_path_is_run(tmp_path: Path) -> None:
    """In the image nothing overrides the command: it is /opt/ml/code/run.sh (5.x used
    /opt/simapp/run.sh, which 6.x images do not have)."""
    result = run("0", SIMAPP_ROLLOUT_COMMAND="")
    assert result.returncode != 0  # no simapp on this machine
    assert "/opt/ml/code/run.sh" in result.stderr


# ------------------------------------------------------------------ Gazebo on any worker index

# What deepracer-simapp's launch/empty_world.launch.py does: pin Gazebo to cores 2i and 2i+1.
GAZEBO_LAUNCH = (
    "taskset -c $((2 * ROLLOUT_IDX)),$((2 * ROLLOUT_IDX + 1)) "
    "python3 -c 'import os; print(\"gazebo on\", sorted(os.sched_getaffinity(0)))'"
)


def _on_one_core(
    tmp_path: Path, index: int, wrapper: bool, **env: str
) -> subprocess.CompletedProcess[str]:
    """The entrypoint as a container with a single CPU sees it (real taskset -c 0 around it),
    with the image's PATH order: /usr/local/bin (the wrapper) before /usr/bin."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / "taskset"
    if wrapper and not link.exists():
        link.symlink_to(WRAPPER)
    code_dir = tmp_path / "code"
    if not code_dir.exists():
        _fake_code_dir(tmp_path, GAZEBO_LAUNCH)
    environment = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ROLLOUT_WORLD_NAMES": "reInvent2019_track",
        "ROLLOUT_YAML_NAMES": "training_params.yaml",
        "SIMAPP_CODE_DIR": str(code_dir),
        "AWS_BATCH_JOB_ARRAY_INDEX": str(index),
        **env,
    }
    return subprocess.run(
        [REAL_TASKSET, "-c", "0", "bash", str(ENTRYPOINT)],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(not Path(REAL_TASKSET).exists(), reason="util-linux taskset is needed")
def test_without_the_wrapper_a_high_index_never_starts_gazebo(tmp_path: Path) -> None:
    """The failure the wrapper exists for: worker 1 asks for cores 2,3 of a 1-CPU container."""
    result = _on_one_core(tmp_path, 1, wrapper=False)
    assert result.returncode != 0 and "gazebo on" not in result.stdout


@pytest.mark.skipif(not Path(REAL_TASKSET).exists(), reason="util-linux taskset is needed")
@pytest.mark.parametrize(
    # Indexes around every boundary of a 1-CPU container (2 * index + 1 reaches past the core
    # count from index 1 on) and at the top of a 64-worker array.
    ("mode", "indexes"),
    [("off", (0, 1, 2, 3, 31, 32, 62, 63)), ("map", (0, 1, 2, 31, 62, 63))],
    ids=["off", "map"],
)
def test_every_worker_index_starts_gazebo_on_a_one_cpu_container(
    tmp_path: Path, mode: str, indexes: range | tuple[int, ...]
) -> None:
    for index in indexes:
        result = _on_one_core(tmp_path, index, wrapper=True, ROLLOUTS_CPU_PINNING=mode)
        assert result.returncode == 0, (index, result.stderr)
        assert result.stdout.splitlines()[-1] == "gazebo on [0]", index


def test_wrapper_folds_cores_onto_the_allowed_ones() -> None:
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("taskset_wrapper", str(WRAPPER))
    spec = importlib.util.spec_from_loader("taskset_wrapper", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    assert module.parse_cpu_list("0,2-4") == [0, 2, 3, 4]
    assert module.fold([126, 127], [0, 1, 2, 3, 4, 5, 6, 7]) == [6, 7]
    assert module.fold([2, 3], [5]) == [5]
    with pytest.raises(ValueError, match="not a CPU list"):
        module.parse_cpu_list("0,x")


def test_wrapper_refuses_an_unknown_mode() -> None:
    result = subprocess.run(
        ["python3", str(WRAPPER), "-c", "0", "true"],
        env={**os.environ, "ROLLOUTS_CPU_PINNING": "sometimes"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 64
    assert "ROLLOUTS_CPU_PINNING is 'sometimes'; allowed: off | map | strict" in result.stderr


# ------------------------------------------------------------------ stopping


def test_sigterm_reaches_the_whole_simulation(tmp_path: Path) -> None:
    """CancelJob/TerminateJob send SIGTERM; run.sh starts ros2 launch in the background, so the
    signal must reach that grandchild too, not only the first process."""
    marks = tmp_path / "marks"
    marks.mkdir()
    child = (
        f"trap 'echo child > {marks}/child; exit 0' TERM; touch {marks}/child-ready; "
        "while true; do sleep 0.05; done"
    )
    code = _fake_code_dir(
        tmp_path,
        f'bash -c "{child}" &\n'
        f"trap 'echo launcher > {marks}/launcher; wait; exit 143' TERM\n"
        f"touch {marks}/started\nwait",
    )
    process = subprocess.Popen(
        ["bash", str(ENTRYPOINT)],
        env={
            "PATH": os.environ["PATH"],
            "ROLLOUT_WORLD_NAMES": "reInvent2019_track",
            "ROLLOUT_YAML_NAMES": "training_params.yaml",
            "SIMAPP_CODE_DIR": str(code),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not all((marks / f).exists() for f in ("started", "child-ready")):
        assert time.monotonic() < deadline, "the fake simulation did not start"
        time.sleep(0.05)
    time.sleep(0.1)  # the launcher set its trap just before it touched "started"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 143, stderr
    assert (marks / "child").read_text().strip() == "child"
    assert (marks / "launcher").read_text().strip() == "launcher"
    assert "TERM received, stopping the simulation" in stderr


# ------------------------------------------------------------------ a normal end exits 0


def _start_simulation(tmp_path: Path, body: str, **env: str) -> tuple[subprocess.Popen[str], Path]:
    """The entrypoint with a fake run.sh that touches <marks>/started, then runs ``body``."""
    marks = tmp_path / "marks"
    marks.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    code = _fake_code_dir(tmp_path, f"touch {marks}/started\n{body}")
    process = subprocess.Popen(
        ["bash", str(ENTRYPOINT)],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "ROLLOUT_WORLD_NAMES": "reInvent2019_track",
            "ROLLOUT_YAML_NAMES": "training_params.yaml",
            "SIMAPP_CODE_DIR": str(code),
            "ROLLOUT_FINISHED_CHECK": "false",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not (marks / "started").exists():
        assert time.monotonic() < deadline, "the fake simulation did not start"
        time.sleep(0.05)
    time.sleep(0.1)
    return process, home


LOOP = "trap 'exit 143' TERM; while true; do sleep 0.05; done"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # The simapp asked its node monitor to stop (a normal end) and then ran shutdown.sh.
        (("STOP_NODE_MONITOR_FILE",), 0),
        # ... after an exception: a failure.
        (("STOP_NODE_MONITOR_FILE", "EXCEPTION_HANDLER_SYNC_FILE"), 143),
        # A stop from outside (CancelJob/TerminateJob, a Spot reclaim).
        ((), 143),
    ],
)
def test_the_simapp_s_own_shutdown_exits_0_only_after_a_normal_end(
    tmp_path: Path, files: tuple[str, ...], expected: int
) -> None:
    # Given a simulation whose simapp left these files in $HOME
    process, home = _start_simulation(tmp_path, LOOP)
    for name in files:
        (home / name).write_text("{}")
    # When the init process passes on shutdown.sh's `kill 1`
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    # Then the job ends SUCCEEDED only when the simulation ended normally
    assert process.returncode == expected, stderr
    assert ("ended normally" in stderr) == (expected == 0)


def test_a_finished_run_ends_the_simulation_and_exits_0(tmp_path: Path) -> None:
    # Given a rollout whose run's model/.finished appears while it waits for a checkpoint
    flag = tmp_path / "finished"
    process, _ = _start_simulation(
        tmp_path,
        LOOP,
        ROLLOUT_FINISHED_CHECK=f"test -f {flag}",
        ROLLOUT_FINISHED_POLL_SECONDS="0.2",
    )
    time.sleep(0.5)
    assert process.poll() is None  # no mark yet: it goes on
    flag.write_text("")
    # Then the watcher sees it and the rollout ends by itself, SUCCEEDED
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "the run finished (model/.finished)" in stderr


def test_a_failing_simulation_keeps_its_exit_code(tmp_path: Path) -> None:
    process, _ = _start_simulation(tmp_path, "exit 3", ROLLOUT_FINISHED_CHECK="true")
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 3, stderr


def test_an_evaluation_leg_is_not_watched(tmp_path: Path) -> None:
    # The finish mark is about training: an evaluation of a finished run must run to its end.
    process, _ = _start_simulation(
        tmp_path,
        "sleep 1; echo leg-done",
        ROLLOUT_LAUNCH_FILE="evaluation.launch.py",
        ROLLOUT_FINISHED_CHECK="true",
        ROLLOUT_FINISHED_POLL_SECONDS="0.1",
    )
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "leg-done" in stdout
    assert "the run finished" not in stderr


def _finished_check(monkeypatch: pytest.MonkeyPatch, answer: dict | str) -> int:
    """run-finished.py against a stubbed S3 (the request checked by the real model)."""
    import importlib.util

    import boto3
    from botocore.stub import Stubber

    spec = importlib.util.spec_from_file_location("run_finished", SIMAPP / "run-finished.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = boto3.client(
        "s3", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    expected = {"Bucket": "data", "Key": "experiments/x/runs/x-0a1b2c3d/model/.finished"}
    if isinstance(answer, str):
        stub.add_client_error(
            "head_object",
            service_error_code=answer,
            http_status_code=404 if answer == "404" else 500,
            expected_params=expected,
        )
    else:
        stub.add_response("head_object", answer, expected)
    stub.activate()
    monkeypatch.setattr(module.boto3, "client", lambda *a, **k: client)
    monkeypatch.setenv("SAGEMAKER_SHARED_S3_BUCKET", "data")
    monkeypatch.setenv("SAGEMAKER_SHARED_S3_PREFIX", "experiments/x/runs/x-0a1b2c3d")
    return int(module.main())


@pytest.mark.parametrize(
    ("answer", "code"), [({"ContentLength": 0}, 0), ("404", 1), ("InternalError", 2)]
)
def test_the_finished_check_asks_s3_for_the_run_s_mark(
    monkeypatch: pytest.MonkeyPatch, answer: dict | str, code: int
) -> None:
    assert _finished_check(monkeypatch, answer) == code
