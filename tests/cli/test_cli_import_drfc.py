"""import-drfc: the real DRfC templates become a valid experiment with the same values."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from cli_support import EXPERIMENTS, FIXTURES

from rollouts.drfc import parse_env
from rollouts.spec import load_experiment

DRFC = FIXTURES / "drfc"
REWARD = EXPERIMENTS / "rewards" / "follow_center_line.py"


def test_templates_import_to_valid_experiment_matching_source(run, tmp_path):
    out = tmp_path / "exp" / "imported.yaml"
    result = run(
        "import-drfc",
        DRFC / "template-run.env",
        DRFC / "template-system.env",
        "--out",
        out,
        "--reward-function",
        REWARD,
        "--json",
    )
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["valid"] is True and doc["problems"] == []
    spec = load_experiment(out)
    env = parse_env(DRFC / "template-run.env").values
    system = parse_env(DRFC / "template-system.env").values
    assert spec.track == env["DR_WORLD_NAME"] == "reinvent_base"
    assert spec.race.type == env["DR_RACE_TYPE"]
    assert spec.car.name == env["DR_CAR_NAME"] and spec.car.color == env["DR_CAR_COLOR"]
    assert spec.car.shell == env["DR_CAR_BODY_SHELL_TYPE"]
    assert spec.rollouts.count == int(system["DR_WORKERS"])
    assert spec.video is (system["DR_CAMERA_KVS_ENABLE"] == "True")
    t = spec.training
    assert t.change_start_position is (env["DR_TRAIN_CHANGE_START_POSITION"] == "True")
    assert t.reverse_direction is (env["DR_TRAIN_REVERSE_DIRECTION"] == "True")
    assert t.alternate_driving_direction is (env["DR_TRAIN_ALTERNATE_DRIVING_DIRECTION"] == "True")
    assert t.round_robin_advance_dist == float(env["DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST"])
    assert t.start_position_offset == float(env["DR_TRAIN_START_POSITION_OFFSET"])
    assert t.min_eval_trials == int(env["DR_TRAIN_MIN_EVAL_TRIALS"])
    assert t.best_model_metric == env["DR_TRAIN_BEST_MODEL_METRIC"]
    assert t.enable_domain_randomization is False
    # files from next to the env files, written relative to the output file
    raw = yaml.safe_load(out.read_text())
    assert not Path(raw["model_metadata"]).is_absolute()
    assert (out.parent / raw["model_metadata"]).resolve() == (
        DRFC / "model_metadata.json"
    ).resolve()
    assert (
        dict(spec.model_metadata)["action_space"]
        == yaml.safe_load((DRFC / "model_metadata.json").read_text())["action_space"]
    )
    assert spec.hyperparameters["discount_factor"] == 0.99  # the fixture's, not the default
    assert spec.episodes_per_iteration == 20
    assert spec.reward_function == REWARD.read_text()
    # every variable is accounted for: mapped or unmapped with a reason
    seen = {v["variable"] for v in doc["mapped"] + doc["unmapped"]}
    assert set(env) | set(system) <= seen
    unmapped = {v["variable"]: v["reason"] for v in doc["unmapped"]}
    for variable in (
        "DR_EVAL_NUMBER_OF_TRIALS",
        "DR_LOCAL_S3_PROFILE",
        "DR_GUI_ENABLE",
        "DR_RUN_ID",
        "DR_OA_NUMBER_OF_OBSTACLES",
        "DR_SIMAPP_VERSION",
    ):
        assert unmapped[variable], variable
    assert "OBJECT_AVOIDANCE" in unmapped["DR_OA_NUMBER_OF_OBSTACLES"]
    assert "simappVersion" in unmapped["DR_SIMAPP_VERSION"]
    # The cameras are rendered (main on, second camera off), not left to the image.
    assert unmapped["DR_CAMERA_SUB_ENABLE"].startswith("always False")
    assert unmapped["DR_CAMERA_MAIN_ENABLE"].startswith("always True")


def test_text_report_lists_unmapped_with_reasons(run, tmp_path):
    out = tmp_path / "x.yaml"
    result = run(
        "import-drfc",
        DRFC / "template-run.env",
        DRFC / "template-system.env",
        "--out",
        out,
        "--reward-function",
        REWARD,
        "--name",
        "my-import",
    )
    assert result.code == 0
    assert "not mapped (" in result.out and "DR_GUI_ENABLE" in result.out
    assert "evaluation settings" in result.out
    assert load_experiment(out).name == "my-import"
    assert "# Not mapped" in out.read_text()
    again = run("import-drfc", DRFC / "template-run.env", "--out", out, "--reward-function", REWARD)
    assert again.code == 2 and "--force" in again.err


def test_missing_reward_function_is_exit_2(run, tmp_path):
    result = run("import-drfc", DRFC / "template-run.env", "--out", tmp_path / "x.yaml")
    assert result.code == 2
    assert "DR_LOCAL_S3_REWARD_KEY" in result.err and "--reward-function" in result.err
    assert not (tmp_path / "x.yaml").exists()


@pytest.fixture
def multi_config(tmp_path: Path) -> Path:
    """A DRfC folder with MULTI_CONFIG on, 3 workers and two worker envs."""
    folder = tmp_path / "drfc"
    folder.mkdir()
    for name in ("model_metadata.json", "hyperparameters.json"):
        shutil.copy(DRFC / name, folder / name)
    shutil.copy(REWARD, folder / "reward_function.py")
    run_env = (DRFC / "template-run.env").read_text()
    run_env = run_env.replace("DR_TRAIN_MULTI_CONFIG=False", "DR_TRAIN_MULTI_CONFIG=True")
    (folder / "run.env").write_text(run_env)
    (folder / "system.env").write_text(
        (DRFC / "template-system.env").read_text().replace("DR_WORKERS=1", "DR_WORKERS=3")
    )
    worker = (DRFC / "template-worker.env").read_text()
    (folder / "worker-2.env").write_text(worker)
    (folder / "worker-3.env").write_text(
        worker.replace("reInvent2019_track", "2022_april_open")
        + "DR_TRAIN_REVERSE_DIRECTION=True\n"
    )
    return folder


def test_worker_envs_become_overrides(run, multi_config, tmp_path):
    out = tmp_path / "multi.yaml"
    f = multi_config
    doc = run(
        "import-drfc",
        f / "run.env",
        f / "system.env",
        f / "worker-2.env",
        f / "worker-3.env",
        "--out",
        out,
        "--json",
    ).json()
    assert doc["valid"], doc["problems"]
    spec = load_experiment(out)
    assert spec.rollouts.count == 3
    assert spec.worker_tracks == ("reinvent_base", "reInvent2019_track", "2022_april_open")
    assert spec.override_for(2).reverse_direction is True
    assert spec.override_for(1).reverse_direction is None  # same as run.env: inherited
    unmapped = [v for v in doc["unmapped"] if v["variable"] == "DR_CAR_COLOR"]
    assert len(unmapped) == 2 and "per-worker values" in unmapped[0]["reason"]


def test_worker_envs_ignored_without_multi_config(run, tmp_path):
    out = tmp_path / "x.yaml"
    doc = run(
        "import-drfc",
        DRFC / "template-run.env",
        DRFC / "template-system.env",
        DRFC / "template-worker.env",
        "--out",
        out,
        "--reward-function",
        REWARD,
        "--json",
    ).json()
    assert doc["valid"] and load_experiment(out).rollouts.overrides == ()
    worker_rows = [v for v in doc["unmapped"] if v["file"] == "template-worker.env"]
    assert worker_rows and all("DR_TRAIN_MULTI_CONFIG is False" in v["reason"] for v in worker_rows)


def test_import_that_would_not_validate_writes_nothing(run, tmp_path, multi_config):
    f = multi_config
    (f / "system.env").write_text("DR_WORKERS=50\n")  # > 20 episodes per iteration
    out = tmp_path / "bad.yaml"
    result = run("import-drfc", f / "run.env", f / "system.env", "--out", out)
    assert result.code == 2
    assert "NOT written" in result.out and "rollouts.count" in result.out
    assert not out.exists() and not list(tmp_path.glob(".*importing*"))


def test_env_parsing_expands_quotes_and_comments(tmp_path):
    env = tmp_path / "run.env"
    env.write_text(
        "# comment\nexport DR_CAR_NAME='Fast Car'\nDR_DISPLAY_NAME=$DR_CAR_NAME\n"
        'DR_X="${DR_CAR_NAME}-2"  # trailing\n\nDR_EMPTY=\n'
    )
    values = parse_env(env).values
    assert values == {
        "DR_CAR_NAME": "Fast Car",
        "DR_DISPLAY_NAME": "Fast Car",
        "DR_X": "Fast Car-2",
        "DR_EMPTY": "",
    }


def _entries(rows: list[dict]) -> list[tuple[str, str]]:
    return [(row["file"], row["variable"]) for row in rows]


@pytest.mark.parametrize("multi", [True, False])
def test_every_variable_is_in_exactly_one_list(run, multi_config, tmp_path, multi):
    f = multi_config
    if not multi:
        (f / "run.env").write_text(
            (f / "run.env").read_text().replace("MULTI_CONFIG=True", "MULTI_CONFIG=False")
        )
    inputs = [f / "run.env", f / "system.env", f / "worker-2.env", f / "worker-3.env"]
    doc = run("import-drfc", *inputs, "--out", tmp_path / "x.yaml", "--json").json()
    assert doc["valid"], doc["problems"]
    mapped, unmapped = _entries(doc["mapped"]), _entries(doc["unmapped"])
    # no variable of a file is listed twice, in one list or across both
    assert len(set(mapped)) == len(mapped) and len(set(unmapped)) == len(unmapped)
    assert set(mapped).isdisjoint(unmapped), set(mapped) & set(unmapped)
    # every DR_* variable of every input is in one of them
    expected = {
        (path.name, variable)
        for path in inputs
        for variable in parse_env(path).values
        if variable.startswith("DR_")
    }
    assert expected == set(mapped) | set(unmapped)
    assert "DR_TRAIN_MULTI_CONFIG" in {v for _, v in mapped}


def test_multi_config_that_is_not_a_boolean_is_unmapped_once(run, multi_config, tmp_path):
    f = multi_config
    (f / "run.env").write_text(
        (f / "run.env").read_text().replace("MULTI_CONFIG=True", "MULTI_CONFIG=maybe")
    )
    doc = run(
        "import-drfc",
        f / "run.env",
        f / "system.env",
        f / "worker-2.env",
        "--out",
        tmp_path / "x.yaml",
        "--json",
    ).json()
    rows = [v for v in doc["mapped"] + doc["unmapped"] if v["variable"] == "DR_TRAIN_MULTI_CONFIG"]
    assert len(rows) == 1 and "not True or False" in rows[0]["reason"]
    workers = [v for v in doc["unmapped"] if v["file"] == "worker-2.env"]
    assert workers and all("is not True" in v["reason"] for v in workers)


def test_non_utf8_env_file_is_exit_2(run, tmp_path):
    env = tmp_path / "run.env"
    env.write_bytes(b"DR_CAR_NAME=Caf\xe9\n")
    result = run("import-drfc", env, "--out", tmp_path / "x.yaml", "--reward-function", REWARD)
    assert result.code == 2
    assert result.err.strip() == (
        f"rollouts import-drfc: error: {env}: not UTF-8 text (byte 0xe9 at offset 15); "
        "DRfC env files are plain text"
    )


def test_unwritable_out_is_exit_1(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run(
        "import-drfc",
        DRFC / "template-run.env",
        "--out",
        blocker / "x.yaml",
        "--reward-function",
        REWARD,
    )
    assert result.code == 1 and "cannot write" in result.err


def test_drfc_checkout_layout_reads_custom_files(run, tmp_path):
    """In a DRfC checkout run.env sits beside custom_files/, the folder `dr-upload-custom-files`
    syncs to DR_LOCAL_S3_CUSTOM_FILES_PREFIX: the DR_LOCAL_S3_*_KEY paths find the files."""
    drfc = tmp_path / "deepracer-for-cloud"
    (drfc / "custom_files").mkdir(parents=True)
    shutil.copy(DRFC / "template-run.env", drfc / "run.env")
    shutil.copy(DRFC / "template-system.env", drfc / "system.env")
    for name in ("model_metadata.json", "hyperparameters.json"):
        shutil.copy(DRFC / name, drfc / "custom_files" / name)
    shutil.copy(REWARD, drfc / "custom_files" / "reward_function.py")
    out = tmp_path / "experiments" / "x.yaml"
    doc = run("import-drfc", drfc / "run.env", drfc / "system.env", "--out", out, "--json").json()
    assert doc["valid"], doc["problems"]
    fields = {v["variable"]: v["field"] for v in doc["mapped"]}
    for variable, key in (
        ("DR_LOCAL_S3_MODEL_METADATA_KEY", "model_metadata"),
        ("DR_LOCAL_S3_HYPERPARAMETERS_KEY", "hyperparameters"),
        ("DR_LOCAL_S3_REWARD_KEY", "reward_function"),
    ):
        assert fields[variable].startswith(f"{key} (local file {drfc / 'custom_files'}")
    assert load_experiment(out).reward_function == REWARD.read_text()
    (drfc / "custom_files" / "reward_function.py").unlink()
    missing = run("import-drfc", drfc / "run.env", "--out", tmp_path / "y.yaml")
    assert missing.code == 2
    assert "no reward_function.py or custom_files/reward_function.py" in missing.err


def test_pretrained_model_maps_into_the_platform_bucket(run, tmp_path):
    """DRfC's pretrained prefix lives in its own bucket; the trainer reads only the platform
    bucket's experiments/, so the import names the folder to copy the model into."""
    run_env = tmp_path / "run.env"
    run_env.write_text(
        (DRFC / "template-run.env")
        .read_text()
        .replace("DR_LOCAL_S3_PRETRAINED=False", "DR_LOCAL_S3_PRETRAINED=True")
        .replace("DR_LOCAL_S3_PRETRAINED_CHECKPOINT=last", "DR_LOCAL_S3_PRETRAINED_CHECKPOINT=best")
    )
    out = tmp_path / "pre.yaml"
    result = run(
        "import-drfc",
        run_env,
        "--out",
        out,
        "--reward-function",
        REWARD,
        "--model-metadata",
        DRFC / "model_metadata.json",
    )
    assert result.code == 0, result.err
    spec = load_experiment(out)
    assert spec.pretrained is not None
    assert spec.pretrained.prefix == "experiments/rl-sagemaker-pretrained"
    assert spec.pretrained.checkpoint == "best"
    assert (
        "copy s3://<DRfC bucket>/rl-sagemaker-pretrained/ to "
        "s3://<platform data bucket>/experiments/rl-sagemaker-pretrained/"
        in result.out
        + result.err
    )
