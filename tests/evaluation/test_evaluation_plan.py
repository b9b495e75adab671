"""Planning an evaluation: the params each leg gets (the keys the simapp's evaluation worker
reads), the checkpoint copy, the SubmitJob request (checked against Batch's own model)."""

from __future__ import annotations

import json

import botocore.session
import pytest
import yaml
from botocore.stub import Stubber
from evaluation.plan import (
    EvaluationError,
    Settings,
    Target,
    evaluation_id,
    flat_yaml,
    plan,
)

RUN = "reinvent-time-trial-0a1b2c3d"
RUN_PREFIX = f"experiments/reinvent-time-trial/runs/{RUN}"
TARGET = Target(
    experiment="reinvent-time-trial",
    run_id=RUN,
    bucket="platform-data",
    run_prefix=RUN_PREFIX,
    region="us-east-1",
    job_queue="arn:aws:batch:us-east-1:123456789012:job-queue/q",
    job_definition="arn:aws:batch:us-east-1:123456789012:job-definition/rollouts:3",
    vcpus=4,
    memory_mib=8192,
    tags={"team": "a"},
)
MODEL_KEYS = [
    f"{RUN_PREFIX}/model/{name}"
    for n in (6, 7, 9)
    for name in (
        f"{n}_Step-{n * 200}.ckpt.index",
        f"{n}_Step-{n * 200}.ckpt.meta",
        f"{n}_Step-{n * 200}.ckpt.data-00000-of-00001",
        f"model_{n}.pb",
    )
] + [f"{RUN_PREFIX}/model/model_metadata.json", f"{RUN_PREFIX}/model/.coach_checkpoint"]
CHECKPOINTS = json.dumps(
    {
        "best_checkpoint": {"name": "7_Step-1400.ckpt", "avg_eval_metric": 80.0},
        "last_checkpoint": {"name": "9_Step-1800.ckpt", "avg_eval_metric": 60.0},
    }
).encode()
TRAINING = {
    "RACE_TYPE": "OBJECT_AVOIDANCE",
    "NUMBER_OF_OBSTACLES": "3",
    "OBSTACLE_TYPE": "box_obstacle",
    "CAR_COLOR": "Red",
    "BODY_SHELL_TYPE": "deepracer",
    "DISPLAY_NAME": "Speedy",
    "REWARD_FILE_S3_KEY": "not copied",
}


def planned(**settings: object):
    values = {"tracks": ("reInvent2019_track", "Spain_track"), **settings}
    return plan(
        TARGET,
        Settings(**values),  # type: ignore[arg-type]
        evaluation_id="eval-1234abcd",
        model_keys=MODEL_KEYS,
        checkpoints_json=CHECKPOINTS,
        training_params=TRAINING,
    )


def test_one_leg_per_track_and_direction_with_the_simapps_keys():
    p = planned(both_directions=True, trials=5, number_of_resets=3, off_track_penalty=3.0)
    prefix = f"{RUN_PREFIX}/evaluations/eval-1234abcd"
    assert p.prefix == prefix
    legs = [
        "reInvent2019_track",
        "reInvent2019_track-reverse",
        "Spain_track",
        "Spain_track-reverse",
    ]
    assert sorted(k for k in p.objects if k.endswith("evaluation_params.yaml")) == sorted(
        f"{prefix}/{leg}/evaluation_params.yaml" for leg in legs
    )
    params = yaml.safe_load(p.objects[f"{prefix}/Spain_track-reverse/evaluation_params.yaml"])
    # The keys markov/evaluation_worker.py and yaml_file.py read, as strings (DRfC's form).
    assert params["JOB_TYPE"] == "EVALUATION"
    assert params["MODEL_S3_BUCKET"] == ["platform-data"]
    assert params["MODEL_S3_PREFIX"] == [prefix]
    assert params["METRICS_S3_OBJECT_KEY"] == [f"{prefix}/Spain_track-reverse/metrics.json"]
    assert params["MP4_S3_OBJECT_PREFIX"] == [f"{prefix}/Spain_track-reverse/mp4"]
    assert params["WORLD_NAME"] == "Spain_track" and params["REVERSE_DIR"] == "True"
    assert params["NUMBER_OF_TRIALS"] == "5" and params["NUMBER_OF_RESETS"] == "3"
    assert params["OFF_TRACK_PENALTY"] == "3.0" and params["COLLISION_PENALTY"] == "5.0"
    assert params["IS_CONTINUOUS"] == "False" and params["EVAL_CHECKPOINT"] == "best"
    assert params["AWS_REGION"] == "us-east-1"
    # Race and car settings come from the run's own training params.
    assert params["RACE_TYPE"] == "OBJECT_AVOIDANCE" and params["NUMBER_OF_OBSTACLES"] == "3"
    assert params["CAR_COLOR"] == ["Red"] and params["DISPLAY_NAME"] == ["Speedy"]
    assert "REWARD_FILE_S3_KEY" not in params
    env = {e["name"]: e["value"] for e in p.submit["containerOverrides"]["environment"]}
    assert env["ROLLOUT_LAUNCH_FILE"] == "evaluation.launch.py"
    assert env["MODEL_S3_PREFIX"] == prefix and env["ENABLE_KINESIS"] == "false"
    assert env["ROLLOUT_WORLD_NAMES"].split(",") == [
        "reInvent2019_track",
        "reInvent2019_track",
        "Spain_track",
        "Spain_track",
    ]
    assert env["ROLLOUT_YAML_NAMES"].split(",") == [f"{leg}/evaluation_params.yaml" for leg in legs]
    assert p.submit["arrayProperties"] == {"size": 4}
    assert p.submit["tags"] == {"team": "a", "rollouts:experiment": "reinvent-time-trial"}


def test_the_chosen_checkpoint_is_copied_and_named_best_and_last():
    for checkpoint, number in (("best", 7), ("last", 9), ("6", 6)):
        p = planned(checkpoint=checkpoint)
        assert p.checkpoint == number
        copied = sorted(destination.rsplit("/", 1)[-1] for _, destination in p.copies)
        assert copied == sorted(
            [
                f"{number}_Step-{number * 200}.ckpt.data-00000-of-00001",
                f"{number}_Step-{number * 200}.ckpt.index",
                f"{number}_Step-{number * 200}.ckpt.meta",
                "model_metadata.json",
            ]
        )
        assert all(d.startswith(p.prefix + "/model/") for _, d in p.copies)
        named = json.loads(p.objects[f"{p.prefix}/model/deepracer_checkpoints.json"])
        assert (
            named["best_checkpoint"]
            == named["last_checkpoint"]
            == {"name": f"{number}_Step-{number * 200}.ckpt"}
        )


def test_the_submit_request_is_valid_for_batch():
    p = planned()
    client = botocore.session.get_session().create_client("batch", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response(
            "submit_job", {"jobName": p.submit["jobName"], "jobId": "j-1"}, dict(p.submit)
        )
        assert client.submit_job(**p.submit)["jobId"] == "j-1"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"checkpoint": "8"},
            "checkpoint 8 is not kept (the trainer keeps the last few and the best; kept: 6, 7, 9)",
        ),
        ({"checkpoint": "newest"}, "checkpoint: 'newest'; allowed: best, last or a number"),
        ({"trials": 0}, "trials: 0; allowed: 1 to 100"),
        ({"number_of_resets": 1}, "number of resets: 1; allowed: 0 or at least 2"),
        ({"race_type": "HEAD_TO_BOT"}, "race type HEAD_TO_BOT: the run trained OBJECT_AVOIDANCE"),
        ({"tracks": ()}, "tracks: give at least one track"),
    ],
)
def test_what_cannot_be_evaluated_is_named(settings, message):
    with pytest.raises(EvaluationError) as caught:
        planned(**settings)
    assert message in str(caught.value)


def test_without_a_checkpoints_file_a_number_is_needed():
    with pytest.raises(EvaluationError, match="give a checkpoint number \\(kept: 6, 7, 9\\)"):
        plan(
            TARGET,
            Settings(tracks=("Spain_track",)),
            evaluation_id="eval-x",
            model_keys=MODEL_KEYS,
            checkpoints_json=None,
            training_params={},
        )


def test_time_trial_drops_the_race_settings_and_ids_are_stable():
    p = planned(race_type="TIME_TRIAL")
    params = yaml.safe_load(next(v for k, v in p.objects.items() if k.endswith(".yaml")))
    assert params["RACE_TYPE"] == "TIME_TRIAL" and "NUMBER_OF_OBSTACLES" not in params
    settings = Settings(tracks=("Spain_track",))
    assert evaluation_id(RUN, settings, "automatic") == evaluation_id(RUN, settings, "automatic")
    assert evaluation_id(RUN, settings, "automatic") != evaluation_id(RUN, settings, "1")


def test_the_rendered_training_params_read_back():
    """flat_yaml reads what rollouts.render writes (yaml.safe_dump of a flat mapping of strings)."""
    from pathlib import Path

    from rollouts.render import worker_yaml
    from rollouts.spec import load_experiment

    repo = Path(__file__).resolve().parents[2]
    for name in ("multi-track-oa", "head-to-bot", "default"):
        text = worker_yaml(load_experiment(repo / "experiments" / f"{name}.yaml"), 0)
        loaded = yaml.safe_load(text)
        assert flat_yaml(text) == {
            k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in loaded.items()
        }, name


def test_the_race_keys_kept_are_the_simapps_race_keys():
    """The Lambda cannot import rollouts.contract: its copy of the race keys must stay in step."""
    from evaluation.plan import RACE_KEYS

    from rollouts import contract

    assert set(contract.OBJECT_AVOIDANCE_KEYS + contract.HEAD_TO_BOT_KEYS) <= set(RACE_KEYS)
    assert set(RACE_KEYS) - set(contract.OBJECT_AVOIDANCE_KEYS + contract.HEAD_TO_BOT_KEYS) == {
        "OBJECT_POSITIONS"  # rendered only when an experiment places its obstacles
    }
