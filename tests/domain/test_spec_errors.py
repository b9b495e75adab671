"""Bad experiment files: each gets its own clear message (file, field, value, what is allowed),
and nothing is synthesized."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from app_support import run_app

from rollouts.spec import SpecError, load_experiment

REPO = Path(__file__).resolve().parents[2]
REWARD = "def reward_function(params):\n    return 1.0\n"
MODEL = """
  action_space: [{steering_angle: 0, speed: 1.0}]
  action_space_type: discrete
  sensor: [FRONT_FACING_CAMERA]
"""


def experiment(body: str, *, model: str = MODEL) -> str:
    text = textwrap.dedent(body).strip("\n")
    if "reward_function:" not in text:
        text += "\nreward_function: reward.py"
    if "model_metadata:" not in text:
        text += "\nmodel_metadata:" + model
    return text + "\n"


BAD_FILES: dict[str, tuple[str, list[str]]] = {
    "misspelt-track": (
        "name: t1\ntrack: reInvent2019_trak\n",
        ["track: 'reInvent2019_trak' is not a known track", "did you mean 'reInvent2019_track'"],
    ),
    "too-many-rollouts-for-episodes": (
        "name: t2\ntrack: reInvent2019_track\nrollouts: {count: 24}\n"
        "hyperparameters: {num_episodes_between_training: 20}\n",
        [
            "rollouts.count: 24 is more than hyperparameters.num_episodes_between_training (20)",
            "workers 20..23 would exit at once and waste their compute",
        ],
    ),
    "rollouts-over-limit": (
        "name: t3\ntrack: reInvent2019_track\nrollouts: {count: 65}\n"
        "hyperparameters: {num_episodes_between_training: 100}\n",
        ["rollouts.count: 65 is not allowed: an integer from 1 to 64"],
    ),
    "misspelt-on-failure": (
        "name: t3a\ntrack: reInvent2019_track\nrollouts: {on_failure: restrat}\n",
        [
            "rollouts.on_failure: 'restrat' is not allowed: must be one of restart, stop, ignore; "
            "did you mean 'restart'?"
        ],
    ),
    "negative-stall-and-too-many-restarts": (
        "name: t3b\ntrack: reInvent2019_track\nrollouts: {stall_minutes: -5, max_restarts: 11}\n",
        [
            "rollouts.stall_minutes: -5 is not allowed: an integer from 0 to 1440",
            "rollouts.max_restarts: 11 is not allowed: an integer from 0 to 10",
        ],
    ),
    "directed-track-reversed": (
        "name: t3c\ntrack: 2022_april_open_cw\ntraining: {reverse_direction: true}\n",
        [
            "training.reverse_direction: true is not allowed with track '2022_april_open_cw' "
            "(worker 0): a _cw/_ccw world already sets the direction",
            "use the base track '2022_april_open' with reverse_direction, or the other variant",
        ],
    ),
    "directed-worker-track-reversed": (
        "name: t3d\ntrack: reInvent2019_track\nrollouts:\n  count: 2\n  overrides:\n"
        "    - {worker: 1, track: 2022_april_pro_ccw, reverse_direction: true}\n",
        [
            "rollouts.overrides (worker 1).reverse_direction: true is not allowed with track "
            "'2022_april_pro_ccw' (worker 1)"
        ],
    ),
    "unknown-top-level-key": (
        "name: t4\ntrack: reInvent2019_track\nrolouts: {count: 2}\n",
        ['rolouts: {"count": 2} is not a known key here', "did you mean 'rollouts'?"],
    ),
    "bad-race-type": (
        "name: t5\ntrack: reInvent2019_track\nrace: {type: TIME_TRAIL}\n",
        [
            "race.type: 'TIME_TRAIL' is not allowed: must be one of TIME_TRIAL, OBJECT_AVOIDANCE, "
            "HEAD_TO_BOT; did you mean 'TIME_TRIAL'?"
        ],
    ),
    "obstacles-on-time-trial": (
        "name: t6\ntrack: reInvent2019_track\nrace:\n  type: TIME_TRIAL\n"
        "  object_avoidance: {number_of_obstacles: 3}\n",
        [
            'race.object_avoidance: {"number_of_obstacles": 3} is not allowed for race type '
            "TIME_TRIAL: only for OBJECT_AVOIDANCE"
        ],
    ),
    "bad-car-color": (
        "name: t7\ntrack: reInvent2019_track\ncar: {color: Green}\n",
        [
            "car.color: 'Green' is not allowed: must be one of Black, Grey, Blue, Red, Orange, "
            "White, Purple"
        ],
    ),
    "bad-name": (
        "name: My_Experiment\ntrack: reInvent2019_track\n",
        ["name: 'My_Experiment' is not allowed: lowercase letters, digits and '-'"],
    ),
    "override-for-missing-worker": (
        "name: t9\ntrack: reInvent2019_track\nrollouts:\n  count: 2\n  overrides:\n"
        "    - {worker: 5, track: 2022_april_open}\n",
        [
            "rollouts.overrides[0].worker: 5 is not allowed: an integer from 0 to 1 "
            "(a worker index below rollouts.count = 2)"
        ],
    ),
    "reward-without-function": (
        "name: t10\ntrack: reInvent2019_track\nreward_function: no_function.py\n",
        ["reward_function: 'no_function.py' does not define reward_function(params)"],
    ),
    "sac-with-discrete-actions": (
        experiment(
            "name: t11\ntrack: reInvent2019_track\n", model=MODEL + "  training_algorithm: sac\n"
        ),
        ["model_metadata.training_algorithm: 'sac' is not allowed with a discrete action space"],
    ),
    "two-cameras": (
        experiment(
            "name: t12\ntrack: reInvent2019_track\n",
            model=MODEL.replace("[FRONT_FACING_CAMERA]", "[FRONT_FACING_CAMERA, LEFT_CAMERA]"),
        ),
        [
            'model_metadata.sensor: ["FRONT_FACING_CAMERA", "LEFT_CAMERA"] is not allowed: '
            "exactly one camera"
        ],
    ),
    "speed-out-of-range": (
        experiment(
            "name: t13\ntrack: reInvent2019_track\n", model=MODEL.replace("speed: 1.0", "speed: 9")
        ),
        ["model_metadata.action_space[0].speed: 9 is not allowed: a number from 0.1 to 4"],
    ),
    "unknown-hyperparameter": (
        "name: t14\ntrack: reInvent2019_track\nhyperparameters: {learning_rate: 0.001}\n",
        ["hyperparameters.learning_rate: 0.001 is not a known key here"],
    ),
    "trainer-instance-type": (
        "name: t15\ntrack: reInvent2019_track\ntrainer: {instance_type: c5.2xlarge}\n",
        [
            "trainer.instance_type: 'c5.2xlarge' is not allowed: a SageMaker training instance "
            "type such as ml.c5.2xlarge"
        ],
    ),
    "boolean-as-string": (
        "name: t16\ntrack: reInvent2019_track\nvideo: 'yes'\n",
        ["video: 'yes' is not allowed: true or false"],
    ),
    "missing-track": ("name: t17\n", ["track: (missing) is required"]),
    "invalid-yaml": ("name: t18\ntrack: [unclosed\n", ["is not valid YAML at line"]),
    "invalid-duplicate-key": (
        "name: t19\ntrack: reInvent2019_track\nname: t20\n",
        ["is not valid YAML at line 3, column 1: duplicate key 'name'"],
    ),
    "overrides-after-count-was-lowered": (
        "name: t21\ntrack: reInvent2019_track\nrollouts:\n  count: 2\n  overrides:\n"
        "    - {worker: 2, track: 2022_april_open}\n    - {worker: 3, track: 2022_april_pro}\n",
        [
            "rollouts.overrides[0].worker: 2 is not allowed: an integer from 0 to 1",
            "rollouts.overrides[1].worker: 3 is not allowed: an integer from 0 to 1",
        ],
    ),
    "tag-with-characters-a-service-refuses": (
        "name: t22\ntrack: reInvent2019_track\ntags: {owner: alice@example.com}\n",
        ["tags.owner: 'alice@example.com' is not allowed: at most 256 of A-Z a-z 0-9"],
    ),
    "pretrained-outside-the-platform-bucket": (
        "name: t23\ntrack: reInvent2019_track\n"
        "pretrained: {prefix: rl-sagemaker-pretrained, bucket: other}\n",
        [
            "pretrained.prefix: 'rl-sagemaker-pretrained' is not allowed: the prefix of an "
            "earlier experiment in the platform bucket, experiments/<name>",
            "pretrained.bucket: 'other' is not a known key here",
        ],
    ),
    "object-position-lane": (
        "name: t27\ntrack: reInvent2019_track\nrace:\n  type: OBJECT_AVOIDANCE\n"
        "  object_avoidance: {object_positions: ['0.5,2']}\n",
        [
            # bundle/markov/agent_ctrl/obstacles_agent_ctrl.py: -1 is the outer lane.
            "race.object_avoidance.object_positions[0]: '0.5,2' is not allowed: "
            '"progress,lane" with progress 0..1 and lane 1 (inner lane) or -1 (outer lane)',
        ],
    ),
    "pretrained-prefix-and-run": (
        "name: t24\ntrack: reInvent2019_track\n"
        "pretrained: {prefix: experiments/base, run: latest}\n",
        [
            "pretrained.prefix: 'experiments/base' is not allowed together with experiment or "
            "run: name a model prefix, or an experiment's run",
        ],
    ),
    "pretrained-run-of-another-experiment": (
        "name: t25\ntrack: reInvent2019_track\n"
        "pretrained: {experiment: base, run: t25-0a0b0c0d, checkpoint: newest}\n",
        [
            "pretrained.run: 't25-0a0b0c0d' is not a run of experiment 'base' (its ids start "
            "base-)",
            "pretrained.checkpoint: 'newest' is not allowed: must be one of last, best",
        ],
    ),
    "pretrained-run-not-an-id": (
        "name: t26\ntrack: reInvent2019_track\npretrained: {run: newest}\n",
        ["pretrained.run: 'newest' is not allowed: latest, or a run id such as"],
    ),
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "reward.py").write_text(REWARD)
    (tmp_path / "no_function.py").write_text("def reward(params):\n    return 1.0\n")
    return tmp_path


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_gets_its_specific_message(case: str, workdir: Path) -> None:
    body, expected = BAD_FILES[case]
    path = workdir / f"{case}.yaml"
    path.write_text(
        body
        if "invalid" in case or "reward_function" in body or "model_metadata" in body
        else experiment(body)
    )
    with pytest.raises(SpecError) as caught:
        load_experiment(path)
    message = str(caught.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    # Every line names the file.
    assert all(line.startswith(str(path)) for line in message.splitlines()), message


def test_file_that_is_not_utf8(workdir: Path) -> None:
    path = workdir / "latin1.yaml"
    path.write_bytes("name: t1\ntrack: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin1.yaml: \(file\): .* is not UTF-8 text"):
        load_experiment(path)
    (workdir / "reward_latin1.py").write_bytes(b"# caf\xe9\ndef reward_function(p):\n  return 1\n")
    path.write_text(
        experiment("name: t1\ntrack: reInvent2019_track\n").replace(
            "reward_function: reward.py", "reward_function: reward_latin1.py"
        )
    )
    with pytest.raises(SpecError, match=r"reward_function: 'reward_latin1.py' is not UTF-8"):
        load_experiment(path)


def test_misspelt_context_key_is_named_not_ignored(tmp_path: Path) -> None:
    result = run_app('{"backnd": "robomaker"}', cwd=REPO, outdir=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert (
        "cdk context 'backnd' is not a setting of this app and is ignored; did you mean "
        "'backend'?" in result.stderr
    )


def test_every_problem_of_a_file_is_reported_at_once(workdir: Path) -> None:
    path = workdir / "many.yaml"
    path.write_text(experiment("name: BAD\ntrack: nowhere\ncar: {color: Pink, wheels: 4}\n"))
    with pytest.raises(SpecError) as caught:
        load_experiment(path)
    fields = [problem.field for problem in caught.value.problems]
    assert fields == ["name", "track", "car.color", "car.wheels"]


def test_synth_of_a_bad_file_exits_2_with_the_message_and_writes_nothing(workdir: Path) -> None:
    path = workdir / "bad.yaml"
    path.write_text(experiment("name: t1\ntrack: reInvent2019_trak\n"))
    outdir = workdir / "cdk.out"
    result = run_app(f'{{"experiment": "{path}"}}', cwd=workdir, outdir=outdir)
    assert result.returncode == 2, result.stderr
    assert "did you mean 'reInvent2019_track'" in result.stderr
    assert "Nothing was synthesized" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not outdir.exists()


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (
            '{"backend": "ec2"}',
            "cdk context 'backend': 'ec2' is not allowed: one of batch, robomaker",
        ),
        ('{"azCount": "1"}', "cdk context 'azCount': '1' is not allowed: an integer from 2 to 6"),
        ('{"experiment": "nope"}', "cdk context 'experiment': 'nope' is not an experiment file"),
        ('{"gpu": true}', "cdk context 'gpu'"),
        ('{"platformName": "caf\u00e9"}', "cdk context 'platformName': 'caf\u00e9' is not allowed"),
    ],
)
def test_bad_context_exits_2(context: str, expected: str, tmp_path: Path) -> None:
    result = run_app(context, cwd=REPO, outdir=tmp_path / "out")
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
