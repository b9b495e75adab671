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
