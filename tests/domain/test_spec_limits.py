"""Every nested section refuses unknown keys, and the documented ranges hold at their edges:
the last value allowed loads, the first value beyond it is refused with the field named. The
limits are the ones README.md's "Experiment files" table documents, stated here."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rollouts.spec import SpecError, load_experiment

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "experiments" / "models" / "discrete-5-actions.json"


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "reward.py").write_text("def reward_function(params):\n    return 1.0\n")
    path = tmp_path / "experiment.yaml"
    text = textwrap.dedent(body).strip("\n")
    path.write_text(
        f"name: limits\ntrack: reInvent2019_track\nreward_function: reward.py\n"
        f"model_metadata: {MODEL}\n{text}\n"
    )
    return path


NESTED = {
    "training": "training: {bogus: 1}",
    "race": "race: {type: TIME_TRIAL, bogus: 1}",
    "race.object_avoidance": "race: {type: OBJECT_AVOIDANCE, object_avoidance: {bogus: 1}}",
    "race.head_to_bot": "race: {type: HEAD_TO_BOT, head_to_bot: {bogus: 1}}",
    "rollouts": "rollouts: {count: 2, bogus: 1}",
    "rollouts.overrides[0]": "rollouts: {count: 2, overrides: [{worker: 1, bogus: 1}]}",
    "trainer": "trainer: {bogus: 1}",
    "car": "car: {bogus: 1}",
    "pretrained": "pretrained: {run: latest, bogus: 1}",
}


@pytest.mark.parametrize("section", sorted(NESTED))
def test_every_nested_section_refuses_an_unknown_key(section: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_experiment(write(tmp_path, NESTED[section]))
    assert f"{section}.bogus: 1 is not a known key here: allowed keys are" in str(caught.value)


# (snippet with {v}, last allowed, first refused, field named in the error)
EDGES = {
    "rollouts.count high": (
        "rollouts: {{count: {v}}}\nhyperparameters: {{num_episodes_between_training: 100}}",
        64,
        65,
        "rollouts.count",
    ),
    "rollouts.count low": ("rollouts: {{count: {v}}}", 1, 0, "rollouts.count"),
    "rollouts.count vs episodes": (
        "rollouts: {{count: {v}}}\nhyperparameters: {{num_episodes_between_training: 8}}",
        8,
        9,
        "rollouts.count",
    ),
    "number_of_obstacles": (
        "race: {{type: OBJECT_AVOIDANCE, object_avoidance: {{number_of_obstacles: {v}}}}}",
        10,
        11,
        "race.object_avoidance.number_of_obstacles",
    ),
    "number_of_bot_cars": (
        "race: {{type: HEAD_TO_BOT, head_to_bot: {{number_of_bot_cars: {v}}}}}",
        6,
        7,
        "race.head_to_bot.number_of_bot_cars",
    ),
    "bot_car_speed": (
        "race: {{type: HEAD_TO_BOT, head_to_bot: {{bot_car_speed: {v}}}}}",
        4,
        4.01,
        "race.head_to_bot.bot_car_speed",
    ),
    "max_run_minutes high": (
        "trainer: {{max_run_minutes: {v}}}",
        7200,
        7201,
        "trainer.max_run_minutes",
    ),
    "max_run_minutes low": ("trainer: {{max_run_minutes: {v}}}", 10, 9, "trainer.max_run_minutes"),
    "tags count": ("tags: {v}", 40, 41, "tags"),
    "tag key length": ("tags: {v}", 128, 129, "tags"),
    "tag value length": ("tags: {v}", 256, 257, "tags"),
}


def _snippet(case: str, value: float) -> str:
    template = EDGES[case][0]
    if case == "tags count":
        return template.format(v="{" + ", ".join(f"t{i}: x" for i in range(int(value))) + "}")
    if case == "tag key length":
        return template.format(v="{" + "k" * int(value) + ": x}")
    if case == "tag value length":
        return template.format(v="{k: " + "v" * int(value) + "}")
    return template.format(v=value)


@pytest.mark.parametrize("case", sorted(EDGES))
def test_documented_range_at_its_edges(case: str, tmp_path: Path) -> None:
    _, allowed, refused, field = EDGES[case]
    load_experiment(write(tmp_path, _snippet(case, allowed)))  # the edge itself loads
    with pytest.raises(SpecError) as caught:
        load_experiment(write(tmp_path, _snippet(case, refused)))
    assert f": {field}" in str(caught.value) or f"{field}." in str(caught.value), caught.value
