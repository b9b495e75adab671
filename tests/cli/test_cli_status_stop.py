"""status and stop against Stubber (request shapes checked against the real service models,
RoboMaker's final one included) and moto S3 for the metrics files."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_world import (
    BUCKET,
    EARLIER,
    EXP,
    PREFIX,
    QUEUE,
    RUN,
    RUN_PREFIX,
    SIM_BATCH,
    STACK,
    T0,
)
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.stub import ANY
from cli_support import FIXTURES

from rollouts import cli, operate
from rollouts.cli import common
from rollouts.cli import status as status_command


def test_status_batch(run, world):
    world.stack()
    world.trainer()
    world.batch_jobs()
    started = int(T0.timestamp() * 1000)
    world.stubs["batch"].add_response(
        "describe_jobs",
        {
            "jobs": [
                {
                    "jobId": "job-1:0",
                    "jobName": RUN,
                    "jobQueue": QUEUE,
                    "status": "RUNNING",
                    "startedAt": started,
                    "jobDefinition": "jd",
                },
                {
                    "jobId": "job-1:1",
                    "jobName": RUN,
                    "jobQueue": QUEUE,
                    "status": "FAILED",
                    "startedAt": started,
                    "stoppedAt": started + 1000,
                    "statusReason": "Essential container in task exited",
                    "jobDefinition": "jd",
                },
            ]
        },
        {"jobs": ["job-1:0", "job-1:1", "job-1:2"]},
    )
    world.s3_metrics()
    doc = run("status", EXP, "--json").json()
    world.done()
    assert doc["run_id"] == RUN and doc["backend"] == "batch"
    assert doc["trainer"]["state"] == "InProgress"
    assert doc["trainer"]["started"] == "2026-11-24T12:00:00Z"
    states = [r["state"] for r in doc["rollouts"]]
    assert states == ["RUNNING", "FAILED", "RUNNING"]  # child 2 not described: parent's state
    assert doc["rollouts"][0]["started"] == "2026-11-24T12:00:00Z"
    assert "exited" in doc["rollouts"][1]["reason"]
    last0 = doc["rollouts"][0]["last_episode"]
    assert last0["episode"] == 568 and last0["phase"] == "training"
    assert last0["iteration"] == -(-568 // 7)  # 21 episodes over 3 workers: 7 each
    assert doc["rollouts"][1]["last_episode"]["episode"] == 3
    assert doc["rollouts"][2]["last_episode"] is None
    assert doc["rollout_states"] == {"FAILED": 1, "RUNNING": 2}
    assert len(doc["video_streams"]) == 3


def test_status_shows_the_first_checkpoint_and_every_workers_episodes(run, world):
    """What "Check your platform" in the README watches for."""
    world.stack()
    world.trainer()
    world.batch_jobs()
    world.stubs["batch"].add_response("describe_jobs", {"jobs": []}, None)
    world.s3_metrics()
    world.checkpoints()
    result = run("status", EXP)
    world.done()
    assert result.code == 0, result.err
    assert "checkpoints: last 3_Step-6100.ckpt, best 2_Step-4000.ckpt" in result.out
    assert f"data s3://{BUCKET}/{RUN_PREFIX}/" in result.out
    # Worker 0 has the fixture's training episodes (evaluation rows do not count); worker 1
    # got its first 3.
    rows = {r.split()[0]: r for r in result.out.splitlines() if r.strip()[:1].isdigit()}
    fixture = json.loads((FIXTURES / "metrics" / "console-training-metrics.json").read_text())
    trained = [r["episode"] for r in fixture["metrics"] if r["phase"] == "training"]
    assert f"{len(trained)} episodes, last ep {trained[-1]}" in rows["0"]
    assert "3 episodes, last ep 3" in rows["1"]
    assert "no metrics yet" in rows["2"]


def test_status_of_an_earlier_run(run, world):
    world.stack()
    world.trainer("Stopped", name=EARLIER)
    world.batch_jobs("SUCCEEDED", name=EARLIER)
    world.stubs["batch"].add_response("describe_jobs", {"jobs": []}, None)
    world.s3_metrics(prefix=f"{PREFIX}/runs/{EARLIER}")
    doc = run("status", EXP, "--run", EARLIER, "--json").json()
    world.done()
    assert doc["run_id"] == EARLIER and doc["current_run"] == RUN
    assert doc["data"] == f"s3://{BUCKET}/{PREFIX}/runs/{EARLIER}/"
    assert doc["trainer"]["state"] == "Stopped"
    assert doc["checkpoints"] is None
    assert doc["rollouts"][0]["last_episode"]["episode"] == 568


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("latest-run", "is not a run id: expected <experiment>-<8 hex digits>"),
        ("other-exp-0a1b2c3d", "is not a run of experiment 'reinvent-time-trial'"),
    ],
)
def test_status_run_must_be_a_run_of_the_experiment(run, world, value, message):
    if value.startswith("other"):
        world.stack()
    result = run("status", EXP, "--run", value)
    assert result.code == 2 and message in result.err


def test_metrics_of_an_earlier_run(run, world):
    world.stack()
    world.s3_metrics(prefix=f"{PREFIX}/runs/{EARLIER}")
    doc = run("metrics", EXP, "--run", EARLIER, "--json").json()
    world.done()
    assert [w["worker"] for w in doc["workers"]] == [0, 1]
    assert run("metrics", "a/b.json", "--run", EARLIER).code == 2


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_status_text_and_watch(run, world, monkeypatch, terminal):
    world.stack(count=1)
    world.trainer("Stopped")
    world.stubs["batch"].add_response(
        "list_jobs",
        {
            "jobSummaryList": [
                {"jobId": "job-9", "jobName": RUN, "createdAt": 5, "status": "SUCCEEDED"}
            ]
        },
        None,
    )
    world.stubs["batch"].add_response(
        "describe_jobs",
        {
            "jobs": [
                {
                    "jobId": "job-9",
                    "jobName": RUN,
                    "jobQueue": QUEUE,
                    "status": "SUCCEEDED",
                    "startedAt": 1,
                    "jobDefinition": "jd",
                }
            ]
        },
        {"jobs": ["job-9"]},
    )

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(status_command.time, "sleep", interrupt)
    # Piped, each refresh is printed after the last; on a terminal rich redraws it in place.
    monkeypatch.setattr(status_command.sys.stdout, "isatty", lambda: terminal, raising=False)
    result = run("status", EXP, "--watch", "5")
    world.done()
    assert result.code == 0
    assert "trainer  Stopped" in result.out and "SUCCEEDED" in result.out
    assert "no metrics yet" in result.out and "refreshing every 5 s" in result.out
    assert ("\x1b[" in result.out) == terminal  # rich's cursor control only on a terminal


def test_status_not_deployed(run, world):
    world.stubs["cloudformation"].add_client_error(
        "describe_stacks", "ValidationError", f"Stack with id {STACK} does not exist"
    )
    result = run("status", EXP)
    assert result.code == 1
    assert "not deployed" in result.err and STACK in result.err


def test_status_robomaker(run, world):
    world.stack("robomaker", count=2)
    world.trainer()
    world.stubs["robomaker"].add_response(
        "describe_simulation_job_batch",
        {
            "arn": SIM_BATCH,
            "status": "InProgress",
            "createdRequests": [{"arn": "arn:sim/1"}, {"arn": "arn:sim/0"}],
        },
        {"batch": SIM_BATCH},
    )
    world.stubs["robomaker"].add_response(
        "batch_describe_simulation_job",
        {
            "jobs": [
                {
                    "arn": "arn:sim/1",
                    "status": "Running",
                    "lastStartedAt": T0,
                    "simulationApplications": [
                        {
                            "application": "app",
                            "launchConfig": {"environmentVariables": {"ROLLOUT_IDX": "1"}},
                        }
                    ],
                },
                {
                    "arn": "arn:sim/0",
                    "status": "Preparing",
                    "simulationApplications": [
                        {
                            "application": "app",
                            "launchConfig": {"environmentVariables": {"ROLLOUT_IDX": "0"}},
                        }
                    ],
                },
            ]
        },
        {"jobs": ["arn:sim/1", "arn:sim/0"]},
    )
    doc = run("status", EXP, "--json").json()
    world.done()
    assert [(r["worker"], r["state"]) for r in doc["rollouts"]] == [
        (0, "Preparing"),
        (1, "Running"),
    ]
    assert doc["rollouts"][1]["started"] == "2026-11-24T12:00:00Z"


def test_stop_batch_with_yes(run, world):
    world.stack()
    # the fan-out's batch stop: find by name, cancel + terminate every active one
    world.batch_jobs()
    world.stubs["batch"].add_response("cancel_job", {}, {"jobId": "job-1", "reason": ANY})
    world.stubs["batch"].add_response("terminate_job", {}, {"jobId": "job-1", "reason": ANY})
    world.trainer("InProgress")
    world.stubs["sagemaker"].add_response("stop_training_job", {}, {"TrainingJobName": RUN})
    result = run("stop", EXP, "--yes")
    world.done()
    assert result.code == 0, result.err
    assert "trainer:  stop requested" in result.out
    assert "1 active job(s) stopped (job-1)" in result.out
    assert "Data in S3 is kept" in result.out


def test_stop_json_already_finished(run, world):
    world.stack()
    world.batch_jobs("SUCCEEDED")  # nothing active: no cancel/terminate
    world.trainer("Completed")  # no StopTrainingJob either
    doc = run("stop", EXP, "--yes", "--json").json()
    world.done()
    assert doc == {
        "experiment": EXP,
        "run_id": RUN,
        "backend": "batch",
        "trainer": "Completed",
        "rollouts": [],
        "evaluations": [],
        "errors": [],
    }


def test_stop_robomaker(run, world):
    world.stack("robomaker", count=2)
    world.stubs["robomaker"].add_response(
        "list_simulation_job_batches",
        {"simulationJobBatchSummaries": [{"arn": SIM_BATCH, "status": "InProgress"}]},
        {},
    )
    world.stubs["robomaker"].add_response(
        "describe_simulation_job_batch",
        {"arn": SIM_BATCH, "status": "InProgress", "tags": {"rollouts:run": RUN}},
        {"batch": SIM_BATCH},
    )
    world.stubs["robomaker"].add_response("cancel_simulation_job_batch", {}, {"batch": SIM_BATCH})
    world.trainer("InProgress")
    world.stubs["sagemaker"].add_response("stop_training_job", {}, {"TrainingJobName": RUN})
    doc = run("stop", EXP, "--yes", "--json").json()
    world.done()
    assert doc["rollouts"] == [SIM_BATCH] and doc["trainer"] == "stopping"


def test_stop_reports_errors_exit_1(run, world):
    world.stack()
    world.stubs["batch"].add_client_error("list_jobs", "AccessDeniedException", "no", 403)
    world.trainer("InProgress")
    world.stubs["sagemaker"].add_response("stop_training_job", {}, {"TrainingJobName": RUN})
    result = run("stop", EXP, "--yes")
    world.done()
    assert result.code == 1
    assert "error: rollouts: AccessDeniedException" in result.out
    assert "stop requested" in result.out  # the trainer is still stopped


def test_stop_needs_confirmation(run, world, monkeypatch):
    world.stack()
    result = run("stop", EXP)  # stdin is not a terminal under pytest
    assert result.code == 2 and "--yes" in result.err
    world.stack()
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda _prompt: "n")
    declined = run("stop", EXP)
    world.done()  # nothing stubbed beyond the stack lookups: nothing was stopped
    assert declined.code == 1 and "not stopped" in declined.err


def test_metrics_by_experiment_name(run, world):
    world.stack()
    world.s3_metrics()
    doc = run("metrics", EXP, "--json").json()
    world.done()
    assert doc["source"] == EXP
    assert [w["worker"] for w in doc["workers"]] == [0, 1]
    assert doc["episodes_per_iteration"] == 21
    assert [w["episodes_per_iteration"] for w in doc["workers"]] == [7, 7]  # RolloutCount 3


def test_no_credentials_is_a_clear_failure(run, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = run("status", EXP, "--region", "us-east-1")
    assert result.code == 1 and "no AWS credentials" in result.err


# ----------------------------------------------------------------------------- AWS setup errors


@pytest.fixture
def empty_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """An AWS config and credentials file without any profile."""
    for name, var in (
        ("config", "AWS_CONFIG_FILE"),
        ("credentials", "AWS_SHARED_CREDENTIALS_FILE"),
    ):
        (tmp_path / name).write_text("")
        monkeypatch.setenv(var, str(tmp_path / name))


AWS_COMMANDS = [
    ["status", EXP],
    ["stop", EXP, "--yes"],
    ["metrics", EXP],
    ["metrics", "s3://platform-data/experiments/x", "--episodes-per-iteration", "20"],
]


def _one_clear_line(result: Any, command: str) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err  # one message, no traceback
    assert lines[0].startswith(f"rollouts {command}: error: ")
    return str(lines[0])


@pytest.mark.parametrize("argv", AWS_COMMANDS)
def test_unknown_profile_flag_is_exit_2(run, empty_aws_config, argv):
    result = run(*argv, "--profile", "nosuch")
    assert result.code == 2
    line = _one_clear_line(result, argv[0])
    assert "AWS profile 'nosuch' (--profile)" in line


@pytest.mark.parametrize("argv", AWS_COMMANDS)
def test_unknown_aws_profile_variable_is_exit_2(run, empty_aws_config, monkeypatch, argv):
    monkeypatch.setenv("AWS_PROFILE", "gone")
    result = run(*argv)
    assert result.code == 2
    assert "AWS profile 'gone' (AWS_PROFILE)" in _one_clear_line(result, argv[0])


@pytest.mark.parametrize("argv", AWS_COMMANDS[:3])  # (S3 has a global endpoint: no region needed)
def test_no_region_is_exit_2(run, empty_aws_config, monkeypatch, argv):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    result = run(*argv)
    assert result.code == 2
    assert "no AWS region: pass --region" in _one_clear_line(result, argv[0])


def test_unparsable_aws_config_is_exit_2(run, monkeypatch, tmp_path):
    (tmp_path / "config").write_text("[default]\nregion = us-east-1\n[profile x]\nno equals sign")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    result = run("status", EXP)
    assert result.code == 2
    assert "Unable to parse config file" in _one_clear_line(result, "status")


@pytest.mark.parametrize(
    "argv",
    [
        ["status", EXP, "--region", "us east 1"],
        ["stop", EXP, "--region", "US-EAST-1"],
        ["metrics", EXP, "--region", "nowhere"],
    ],
)
def test_malformed_region_flag_is_a_usage_error(run, argv):
    result = run(*argv)
    assert result.code == 2
    assert "argument --region:" in result.err and "like us-east-1" in result.err


def test_endpoint_unreachable_is_exit_1(run, world, monkeypatch):
    def unreachable(**_kwargs: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://cloudformation.us-east-1.amazonaws.com")

    monkeypatch.setattr(world.aws.clients["cloudformation"], "describe_stacks", unreachable)
    for argv in (["status", EXP], ["stop", EXP, "--yes"], ["metrics", EXP]):
        result = run(*argv)
        assert result.code == 1, argv
        assert "Could not connect to the endpoint URL" in _one_clear_line(result, argv[0])


def test_s3_unreachable_while_reading_metrics_is_exit_1(run, world, monkeypatch):
    world.stack()
    world.s3_metrics()

    def timeout(**_kwargs: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://s3.amazonaws.com")

    monkeypatch.setattr(world.aws.clients["s3"], "get_object", timeout)
    result = run("metrics", EXP)
    world.done()
    assert result.code == 1
    assert "s3:GetObject" in _one_clear_line(result, "metrics")


def test_botocore_error_outside_the_helpers_is_one_line(run, monkeypatch):
    def boom(_aws: Any, _experiment: str, _run: str | None) -> None:
        raise ReadTimeoutError(endpoint_url="https://sagemaker.us-east-1.amazonaws.com")

    monkeypatch.setattr(operate, "collect_status", boom)
    result = run("status", EXP)
    assert result.code == 1
    assert "AWS: Read timeout" in _one_clear_line(result, "status")


# ----------------------------------------------------------------------------- experiment names


@pytest.mark.parametrize("name", ["Bad Name", "Reinvent", "9lives", "a_b", "x" * 41, ""])
@pytest.mark.parametrize("command", ["status", "stop"])
def test_bad_experiment_name_exit_2_before_aws(run, monkeypatch, command, name):
    def no_aws(_args: Any) -> None:
        raise AssertionError("AWS must not be touched for a bad name")

    def no_prompt(_prompt: str) -> str:
        raise AssertionError("no confirmation must be asked for a bad name")

    monkeypatch.setattr(common, "aws", no_aws)
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", no_prompt)
    result = run(command, name)
    assert result.code == 2
    assert f"argument EXPERIMENT: {name!r} is not an experiment name" in result.err
    assert "lowercase letters, digits and '-'" in result.err


def test_stop_prompt_at_end_of_input_does_not_stop(run, world, monkeypatch):
    world.stack()

    def eof(_prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", eof)
    result = run("stop", EXP)
    world.done()  # only the stack was read
    assert result.code == 1 and "not stopped" in result.err


def test_status_shows_the_runs_outcome_and_the_supervisors_actions(run, world):
    # Given the run supervisor stopped worker 1's run after its restarts
    world.stack()
    world.trainer()
    world.batch_jobs()
    world.stubs["batch"].add_response("describe_jobs", {"jobs": []}, None)
    world.s3_metrics()
    record = {
        "runId": RUN,
        "outcome": {
            "kind": "stopped-by-supervisor",
            "reason": "on-failure: worker 1 failed: OutOfMemoryError; restarts used 3 of 3",
            "at": "2026-11-24T13:00:00Z",
        },
        "actions": [
            {
                "at": "2026-11-24T12:30:00Z",
                "action": "restart",
                "rule": "on-failure",
                "reason": "worker 1 failed: OutOfMemoryError; restart 1 of 3",
            },
            {
                "at": "2026-11-24T13:00:00Z",
                "action": "stop",
                "rule": "on-failure",
                "reason": "worker 1 failed: OutOfMemoryError; restarts used 3 of 3",
            },
        ],
        "restarts": {"1": 3},
    }
    world.aws.clients["s3"].put_object(
        Bucket=BUCKET, Key=f"experiments/{EXP}/supervisor/{RUN}.json", Body=json.dumps(record)
    )
    # When the user asks for the status
    text = run("status", EXP).out
    world.stack()
    world.trainer()
    world.batch_jobs()
    world.stubs["batch"].add_response("describe_jobs", {"jobs": []}, None)
    doc = run("status", EXP, "--json").json()
    # Then the outcome and every action are there, with their reasons
    assert (
        "outcome  stopped-by-supervisor at 2026-11-24T13:00:00Z: on-failure: worker 1 failed"
        in text
    )
    assert "restart 1 of 3" in text and "restarts used 3 of 3" in text
    assert "restarts: worker 1: 3" in text
    assert doc["outcome"]["kind"] == "stopped-by-supervisor"
    assert [a["action"] for a in doc["supervisor_actions"]] == ["restart", "stop"]
