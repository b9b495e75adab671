"""validate, plan, render and usage: offline commands, exit codes, --json structures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_support import EXPERIMENTS, REPO

from rollouts.render import worker_yaml
from rollouts.spec import load_experiment

ARN = "arn:aws-us-gov:sagemaker:us-gov-west-1:123456789012:training-job/h2b-0a1b2c3d"
COMMANDS = ("validate", "plan", "render", "status", "metrics", "stop", "import-drfc")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def bad_experiment(tmp_path: Path) -> Path:
    return write(
        tmp_path / "bad.yaml",
        "name: Bad_Name\ntrack: reInvent2019_trak\n"
        "race: {type: DRAG_RACE}\nmodel_metadata: nope.json\n"
        "reward_function: missing.py\n",
    )


# ----------------------------------------------------------------------------- usage


def test_help_everywhere(run):
    top = run("--help")
    assert top.code == 0 and all(c in top.out for c in COMMANDS)
    for command in COMMANDS:
        result = run(command, "--help")
        assert result.code == 0, command
        assert f"usage: rollouts {command}" in result.out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["validate"],
        ["render", str(EXPERIMENTS / "default.yaml")],  # --out missing
        ["metrics", "x", "--episodes-per-iteration", "0"],
        ["metrics", "x", "--phase", "warmup"],
        ["status", "x", "--watch", "0.1"],
        ["import-drfc", "/nonexistent/run.env", "--out", "x.yaml"],
        ["plan", str(EXPERIMENTS / "default.yaml"), "-c", "novalue"],
    ],
)
def test_bad_arguments_exit_2_with_usage(run, argv):
    result = run(*argv)
    assert result.code == 2
    assert "usage: rollouts" in result.err or "error:" in result.err


def test_python_dash_m_and_console_script():
    module = subprocess.run(
        [sys.executable, "-m", "rollouts", "--version"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert module.returncode == 0 and module.stdout.startswith("rollouts ")
    script = Path(sys.executable).with_name("rollouts")
    if script.exists():
        bad = subprocess.run([str(script), "validate"], capture_output=True, text=True, check=False)
        assert bad.returncode == 2 and "usage:" in bad.stderr


# ----------------------------------------------------------------------------- validate


def test_validate_examples_ok(run):
    files = sorted(EXPERIMENTS.glob("*.yaml"))
    result = run("validate", *files)
    assert result.code == 0, result.out + result.err
    assert result.out.count("ok ") == len(files)


def test_validate_lists_every_problem(run, bad_experiment):
    result = run("validate", bad_experiment)
    assert result.code == 2
    for field in ("name", "track", "race.type", "model_metadata", "reward_function"):
        assert f"  {field}: " in result.out
    assert "did you mean 'reInvent2019_track'" in result.out
    doc = run("validate", bad_experiment, "--json").json()
    assert doc["valid"] is False
    problems = doc["files"][0]["problems"]
    assert {p["field"] for p in problems} >= {"name", "track", "race.type"}
    assert set(problems[0]) == {"file", "field", "value", "missing", "message"}
    name = next(p for p in problems if p["field"] == "name")
    assert name["value"] == "Bad_Name" and name["file"] == str(bad_experiment)


def test_validate_mixed_and_duplicate_names(run, tmp_path, bad_experiment):
    copy = tmp_path / "copy.yaml"
    text = (EXPERIMENTS / "default.yaml").read_text().replace("models/", f"{EXPERIMENTS}/models/")
    write(copy, text.replace("rewards/", f"{EXPERIMENTS}/rewards/"))
    doc = run("validate", EXPERIMENTS / "default.yaml", copy, "--json").json()
    assert doc["valid"] is False
    assert "already used" in doc["files"][1]["problems"][0]["message"]
    result = run("validate", EXPERIMENTS / "default.yaml", bad_experiment)
    assert result.code == 2 and "1 of 2 file(s) invalid" in result.err


def test_validate_missing_file(run, tmp_path):
    result = run("validate", tmp_path / "nope.yaml", "--json")
    assert result.code == 2
    assert "cannot be read" in result.json()["files"][0]["problems"][0]["message"]


# ----------------------------------------------------------------------------- plan


def test_plan_multi_track(run):
    doc = run("plan", EXPERIMENTS / "multi-track-oa.yaml", "--json").json()
    assert doc["experiment"] == "oa-multi-track"
    assert [w["track"] for w in doc["workers"]] == [
        "reInvent2019_track",
        "2022_april_open",
        "reInvent2019_wide",
    ]
    assert [w["reverse_direction"] for w in doc["workers"]] == [False, False, True]
    assert doc["episodes"]["per_worker"] == [4, 4, 4]
    assert doc["video"] == {"enabled": False, "streams": []}
    assert doc["s3"]["prefix"] == "experiments/oa-multi-track"
    # Each deploy is a new run with a prefix of its own.
    assert doc["s3"]["run_prefix"] == "experiments/oa-multi-track/runs/<run-id>"
    assert (
        doc["s3"]["keys"]["metrics"][1]
        == "experiments/oa-multi-track/runs/<run-id>/metrics/TrainingMetrics_1.json"
    )
    # The simapp adds "<worker>/training-simtrace/" when there are several workers.
    assert doc["s3"]["keys"]["simtrace"] == [
        f"experiments/oa-multi-track/runs/<run-id>/{i}/training-simtrace/" for i in range(3)
    ]
    assert doc["s3"]["keys"]["run_manifest"] == "experiments/oa-multi-track/run.json"
    assert doc["rollouts"]["count"] == 3 and doc["backend"] == "batch"
    assert doc["trainer"]["instance_type"] == "ml.c5.2xlarge"
    text = run("plan", EXPERIMENTS / "multi-track-oa.yaml")
    assert text.code == 0 and "2022_april_open" in text.out and "Episodes: 12" in text.out


def test_plan_warnings(run, tmp_path):
    src = (EXPERIMENTS / "default.yaml").read_text()
    src = src.replace("count: 4 ", "count: 7 ").replace("models/", f"{EXPERIMENTS}/models/")
    src = src.replace("rewards/", f"{EXPERIMENTS}/rewards/").replace(
        "num_episodes_between_training: 20", "num_episodes_between_training: 10"
    )
    experiment = write(tmp_path / "wasteful.yaml", src)
    load_experiment(experiment)  # valid, but wasteful
    doc = run("plan", experiment, "--json", "-c", "backend=robomaker").json()
    joined = "\n".join(doc["warnings"])
    assert "do not split evenly" in joined  # 10 over 7: 2 or 1 each
    assert "about 1 episode" in joined
    assert "video is on for 7 workers" in joined
    assert "RoboMaker" in joined
    assert doc["episodes"]["per_worker"] == [2, 2, 2, 1, 1, 1, 1]
    assert sum(doc["episodes"]["per_worker"]) == 10
    assert doc["video"]["streams"][6] == "rollouts-reinvent-time-trial-6"
    assert run("plan", experiment).out.count("warning:") == 3  # batch: no RoboMaker one


def test_plan_default_no_warnings_and_bad_context(run):
    doc = run("plan", EXPERIMENTS / "default.yaml", "--json").json()
    assert doc["warnings"] == []
    bad = run("plan", EXPERIMENTS / "default.yaml", "-c", "backend=ec2")
    assert bad.code == 2 and "backend" in bad.err


def test_plan_invalid_experiment_exit_2(run, bad_experiment):
    result = run("plan", bad_experiment)
    assert result.code == 2 and "race.type" in result.err


# ----------------------------------------------------------------------------- render


def test_render_per_worker_files_hold_the_run_values(run, tmp_path):
    result = run(
        "render",
        EXPERIMENTS / "multi-track-oa.yaml",
        "--out",
        tmp_path,
        "--bucket",
        "bkt",
        "--region",
        "eu-west-1",
        "--json",
    )
    assert result.code == 0
    doc = result.json()
    assert doc["files"] == [f"training_params_{i}.yaml" for i in range(3)]
    assert doc["placeholders"] == ["account", "training_job_arn"]
    data = "experiments/oa-multi-track/runs/<run-id>"  # the run prefix, its id unknown offline
    tracks = ["reInvent2019_track", "2022_april_open", "reInvent2019_wide"]
    for i in range(3):
        text = (tmp_path / f"training_params_{i}.yaml").read_text()
        params = yaml.safe_load(text)
        assert params["WORLD_NAME"] == tracks[i]
        assert params["SAGEMAKER_SHARED_S3_BUCKET"] == "bkt"
        assert params["SAGEMAKER_SHARED_S3_PREFIX"] == data
        assert params["AWS_REGION"] == "eu-west-1"
        # One key for all: the simapp adds _<i> for workers >= 1 (markov/rollout_worker.py).
        assert params["METRICS_S3_OBJECT_KEY"] == f"{data}/metrics/TrainingMetrics.json"
        assert params["MODEL_METADATA_FILE_S3_KEY"] == f"{data}/model/model_metadata.json"
        assert params["KINESIS_VIDEO_STREAM_NAME"] == ""  # video off
        assert params["TRAINING_JOB_ARN"] == "{{training_job_arn}}"  # visible placeholder
        assert params["ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID"] == "{{account}}"
        assert set(re.findall(r"\{\{(\w+)\}\}", text)) == {"account", "training_job_arn"}
    assert yaml.safe_load((tmp_path / "training_params_2.yaml").read_text())["REVERSE_DIR"] == (
        "True"
    )


def test_render_shared_file_when_identical(run, tmp_path):
    # head-to-bot: 2 workers, same settings, video off -> one shared file, as the fan-out does.
    result = run(
        "render",
        EXPERIMENTS / "head-to-bot.yaml",
        "--out",
        tmp_path,
        "--bucket",
        "my-data.bucket",
        "--region",
        "us-gov-west-1",
        "--account",
        "123456789012",
        "--training-job-arn",
        ARN,
    )
    assert result.code == 0, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training_params.yaml"]
    params = yaml.safe_load((tmp_path / "training_params.yaml").read_text())
    assert "{{" not in (tmp_path / "training_params.yaml").read_text()
    assert params["RACE_TYPE"] == "HEAD_TO_BOT" and params["NUMBER_OF_BOT_CARS"] == "2"
    assert params["TRAINING_JOB_ARN"] == ARN
    assert params["ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID"] == "123456789012"  # a string, not int
    assert params["METRICS_S3_BUCKET"] == "my-data.bucket"


def test_render_video_streams_and_placeholders(run, tmp_path):
    out = tmp_path / "o"
    doc = run("render", EXPERIMENTS / "default.yaml", "--out", out, "--json").json()
    assert len(doc["files"]) == 4  # stream names differ per worker
    assert (
        yaml.safe_load((out / "training_params_3.yaml").read_text())["KINESIS_VIDEO_STREAM_NAME"]
        == "rollouts-reinvent-time-trial-3"
    )
    bad = run("render", EXPERIMENTS / "default.yaml", "--out", out, "--video-streams", "a,b")
    assert bad.code == 2 and "4 worker" in bad.err
    raw = run(
        "render",
        EXPERIMENTS / "default.yaml",
        "--out",
        tmp_path / "raw",
        "--keep-placeholders",
        "--json",
    ).json()
    assert raw["files"] == ["training_params.yaml"]
    assert "video_stream" in raw["placeholders"] and "prefix" in raw["placeholders"]


def test_render_bundle(run, tmp_path):
    doc = run(
        "render", EXPERIMENTS / "default.yaml", "--out", tmp_path, "--bundle", "--json"
    ).json()
    assert {"manifest.json", "reward_function.py", "model_metadata.json"} <= set(doc["files"])


def test_render_out_is_a_file(run, tmp_path):
    target = write(tmp_path / "f", "x")
    assert run("render", EXPERIMENTS / "default.yaml", "--out", target).code == 2


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("--bucket", "Bad Bucket", "lowercase letters, digits, '.' and '-'"),
        ("--bucket", "ab", "2 characters long"),
        ("--bucket", "bucket-", "begin and end with a lowercase letter or digit"),
        ("--bucket", "my..bucket", "two adjacent periods"),
        ("--bucket", "192.168.5.4", "IP address"),
        ("--bucket", "xn--bucket", "'xn--'"),
        ("--bucket", "data-s3alias", "'-s3alias'"),
        ("--bucket", "it's", "lowercase letters"),
        ("--region", "Us-East-1", "like us-east-1"),
        ("--region", "r", "like us-east-1"),
        ("--region", "us-east-1'", "like us-east-1"),
        ("--account", "1", "12 digits"),
        ("--account", "12345678901x", "12 digits"),
        ("--training-job-arn", "arn:x", "training-job/<name>"),
        (
            "--training-job-arn",
            "arn:aws:sagemaker:us-east-1:1234:training-job/run",
            "12-digit account",
        ),
        ("--training-job-arn", "arn:aws:s3:::bucket", "training-job/<name>"),
        ("--training-job-arn", "arn:aws:sagemaker:us-east-1:123456789012:training-job/a'b", "name"),
        ("--prefix", "a'b", "like experiments/my-run"),
        ("--prefix", "/experiments/x", "no leading"),
        ("--prefix", "experiments//x", "doubled"),
        ("--prefix", "experiments/../x", "'..'"),
        ("--prefix", "a\nb: c", "joined by '/'"),
    ],
)
def test_render_rejects_bad_deploy_values(run, tmp_path, flag, value, allowed):
    out = tmp_path / "out"
    result = run("render", EXPERIMENTS / "default.yaml", "--out", out, flag, value)
    assert result.code == 2
    assert "usage: rollouts render" in result.err
    assert f"argument {flag}: {value!r}" in result.err and allowed in result.err
    assert not out.exists()  # nothing written


def test_render_rejects_bad_video_stream_and_mismatched_arn(run, tmp_path):
    bad = run(
        "render",
        EXPERIMENTS / "head-to-bot.yaml",
        "--out",
        tmp_path / "a",
        "--video-streams",
        "ok-stream,it's",
    )
    assert bad.code == 2 and '--video-streams: "it\'s"' in bad.err and "letters" in bad.err
    arn = "arn:aws:sagemaker:us-east-1:123456789012:training-job/run-1"
    for flag, value, part in (
        ("--region", "eu-west-1", "region us-east-1"),
        ("--account", "210987654321", "account 123456789012"),
    ):
        mismatch = run(
            "render",
            EXPERIMENTS / "head-to-bot.yaml",
            "--out",
            tmp_path / "b",
            "--training-job-arn",
            arn,
            flag,
            value,
        )
        assert mismatch.code == 2 and part in mismatch.err and f"{flag} is {value}" in mismatch.err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_render_values_are_read_back_exactly(run, tmp_path):
    """Every filled value reads back from the YAML as the very string given (valid values of
    each flag, including the characters the rules allow that mean something in YAML)."""
    values = {
        "--bucket": "a.b-c",
        "--region": "eusc-de-east-1",
        "--account": "000000000001",
        "--training-job-arn": "arn:aws:sagemaker:eusc-de-east-1:000000000001:training-job/0-9",
        "--prefix": "exp/a!b_c.d*(e)-f",
    }
    argv = [x for pair in values.items() for x in pair]
    streams = "s-0,s_1.x,,s:3"
    bad = run("render", EXPERIMENTS / "default.yaml", "--out", tmp_path, "--video-streams", streams)
    assert bad.code == 2 and "'s:3'" in bad.err  # ':' is not allowed in a stream name
    streams = "s-0,s_1.x,,-"
    result = run(
        "render", EXPERIMENTS / "default.yaml", "--out", tmp_path, *argv, "--video-streams", streams
    )
    assert result.code == 0, result.err
    for i, stream in enumerate(streams.split(",")):
        params = yaml.safe_load((tmp_path / f"training_params_{i}.yaml").read_text())
        assert params["SAGEMAKER_SHARED_S3_BUCKET"] == values["--bucket"]
        assert params["AWS_REGION"] == values["--region"]
        assert params["ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID"] == values["--account"]
        assert params["TRAINING_JOB_ARN"] == values["--training-job-arn"]
        assert params["SAGEMAKER_SHARED_S3_PREFIX"] == values["--prefix"]
        assert params["METRICS_S3_OBJECT_KEY"].startswith(values["--prefix"] + "/metrics/")
        assert params["KINESIS_VIDEO_STREAM_NAME"] == stream


def test_checked_fill_refuses_values_that_change_the_yaml():
    """The guard behind the flag checks: a value that would break out of its YAML scalar (here
    given directly, as no flag accepts one) is refused instead of written."""
    from rollouts.cli import common, render

    template = worker_yaml(load_experiment(EXPERIMENTS / "head-to-bot.yaml"), 0)
    assert "{{bucket}}" in render._checked_fill(template, {"region": "us-east-1"})
    for values in ({"bucket": "it's"}, {"prefix": "a\nAWS_REGION: x"}, {"video_stream": "a'"}):
        with pytest.raises(common.UsageError, match="quotes and line breaks"):
            render._checked_fill(template, values)


def test_render_unwritable_out_is_a_clear_failure(run, tmp_path):
    blocker = write(tmp_path / "file", "x")
    for extra in ([], ["--bundle"]):
        result = run("render", EXPERIMENTS / "default.yaml", "--out", blocker / "sub", *extra)
        assert result.code == 1, extra
        assert "cannot write" in result.err and "Traceback" not in result.err


def test_plan_cdk_json_that_is_not_an_object(run, tmp_path):
    for text in ("[1, 2]", '{"context": [1]}', "\xff"):
        cdk = tmp_path / "cdk.json"
        cdk.write_bytes(text.encode("latin-1"))
        result = run("plan", EXPERIMENTS / "default.yaml", "--cdk-json", cdk)
        assert result.code == 2 and str(cdk) in result.err, text
        assert "Traceback" not in result.err


def test_progress_spins_on_a_terminal_only(monkeypatch, capsys):
    import sys

    from rollouts.cli.common import progress

    with progress("loading") as update:
        update("1/2 files")
    assert capsys.readouterr().err == "", "piped: no spinner"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with progress("loading") as update:
        update("2/2 files")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\x1b[") >= 1  # drawn, then cleared


def test_plan_names_a_misspelt_context_key_as_synth_does(run):
    result = run("plan", EXPERIMENTS / "default.yaml", "-c", "backnd=robomaker", "--json")
    assert result.code == 0
    assert (
        "warning: cdk context 'backnd' is not a setting of this app and is ignored; "
        "did you mean 'backend'?"
    ) in result.err
    assert result.json()["backend"] == "batch"  # the misspelt key changed nothing


def test_render_fills_the_run_id_or_says_that_it_is_left(run, tmp_path):
    experiment = EXPERIMENTS / "multi-track-oa.yaml"
    # Without a run id every key keeps <run-id>, and the user is told how to fill it
    plain = run("render", experiment, "--out", tmp_path / "a")
    assert plain.code == 0 and "<run-id> is left in every S3 key" in plain.out
    assert "--run-id" in plain.out
    # --run-id fills it
    named = run(
        "render",
        experiment,
        "--out",
        tmp_path / "b",
        "--run-id",
        "oa-multi-track-1a2b3c4d",
        "--json",
    )
    assert named.code == 0 and named.json()["run_id_left"] is False
    text = (tmp_path / "b" / "training_params_0.yaml").read_text()
    assert "<run-id>" not in text
    assert (
        yaml.safe_load(text)["SAGEMAKER_SHARED_S3_PREFIX"]
        == "experiments/oa-multi-track/runs/oa-multi-track-1a2b3c4d"
    )
    # ... and so does the training job ARN, which is named after its run
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:training-job/oa-multi-track-99aa88bb"
    from_arn = run(
        "render", experiment, "--out", tmp_path / "c", "--training-job-arn", arn, "--json"
    )
    assert from_arn.json()["run_id_left"] is False
    # A run id of another experiment, or one that disagrees with the ARN, is refused
    other = run("render", experiment, "--out", tmp_path / "d", "--run-id", "reinvent-1a2b3c4d")
    assert other.code == 2 and "is not a run of oa-multi-track" in other.err
    clash = run(
        "render",
        experiment,
        "--out",
        tmp_path / "e",
        "--run-id",
        "oa-multi-track-1a2b3c4d",
        "--training-job-arn",
        arn,
    )
    assert clash.code == 2 and "a run's training job is named after it" in clash.err


def test_a_sweeps_total_is_the_exact_sum_rounded_once(run):
    doc = run("plan", EXPERIMENTS / "lr-sweep.yaml", "--json").json()
    rows = doc["variants"]
    assert len(rows) == 4
    exact = sum(r["cost"]["worst_case_exact"] for r in rows)
    assert doc["total_cost"]["worst_case_usd"] == round(exact, 2)
    assert doc["total_cost"]["estimate_usd"] == round(
        sum(r["cost"]["estimate_exact"] for r in rows), 2
    )


def test_a_reward_function_importing_beyond_the_console_is_warned_about(run, tmp_path):
    (tmp_path / "reward.py").write_text(
        "import math\nimport os, subprocess\nfrom numpy import mean\n"
        "def reward_function(params):\n    return 1.0\n"
    )
    path = tmp_path / "warned.yaml"
    path.write_text((EXPERIMENTS / "smoke.yaml").read_text().replace("name: smoke", "name: warned"))
    text = path.read_text()
    import re as _re

    path.write_text(_re.sub(r"reward_function: .*", "reward_function: reward.py", text))
    models = EXPERIMENTS / "models"
    path.write_text(path.read_text().replace("models/", f"{models}/"))
    result = run("validate", path)
    assert result.code == 0, result.err
    assert (
        "warning: reward_function imports os, subprocess: the DeepRacer console accepts only math"
        in result.out
    )
    doc = run("plan", path, "--json").json()
    assert any("imports os, subprocess" in w for w in doc["warnings"])
