"""Experiment files as users write them (YAML 1.2), and the limits no file gets past: every
command that reads an experiment file answers each of these in words, at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollouts import yaml_input
from rollouts.spec import SpecError, load_experiment

REWARD = "def reward_function(params):\n    return 1.0\n"
BASE = (
    "name: yaml-{n}\ntrack: reInvent2019_track\nreward_function: reward.py\n"
    "model_metadata:\n  action_space: [{{steering_angle: 0, speed: 1.0}}]\n"
    "  action_space_type: discrete\n  sensor: [FRONT_FACING_CAMERA]\n"
)


def _billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def _file(tmp_path: Path, body: str, n: int = 1) -> Path:
    (tmp_path / "reward.py").write_text(REWARD)
    path = tmp_path / "exp.yaml"
    path.write_text(BASE.format(n=n) + body)
    return path


def _problem(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_experiment(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    return message


def test_an_exponent_float_is_a_float(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) read 3e-4 as the string '3e-4'; YAML 1.2, like JSON Schema, as a float
    spec = load_experiment(_file(tmp_path, "hyperparameters: {lr: 3e-4}\n"))
    assert spec.hyperparameters["lr"] == pytest.approx(0.0003)


def test_yes_is_a_string_and_a_boolean_field_says_so(tmp_path: Path) -> None:
    message = _problem(_file(tmp_path, "video: yes\n"))
    assert "video: 'yes' is not allowed: true or false" in message


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    message = _problem(_file(tmp_path, _billion_laughs()))
    assert "expands to more than 100,000 values" in message
    assert "anchors and aliases repeat what they name" in message


def test_a_few_aliases_still_work() -> None:
    assert yaml_input.load("base: &b {x: 1}\nother: *b\n") == {"base": {"x": 1}, "other": {"x": 1}}


def test_too_many_aliases_are_refused() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n"
    with pytest.raises(yaml_input.YamlInputError, match="more than 100 aliases"):
        yaml_input.load(text)


@pytest.mark.parametrize("levels", [65, 5000])
def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path, levels: int) -> None:
    message = _problem(_file(tmp_path, "deep: " + "[" * levels + "]" * levels + "\n"))
    assert "nests deeper than 64 levels at line" in message


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = _file(tmp_path, "padding: '" + "x" * (2 * 1024 * 1024) + "'\n")
    message = _problem(path)
    assert "bytes; an experiment file may have at most 1,048,576" in message


def test_a_duplicate_key_is_named_with_its_line() -> None:
    with pytest.raises(yaml_input.YamlInputError) as caught:
        yaml_input.load("a: 1\nb: 2\na: 3\n")
    assert str(caught.value) == "is not valid YAML at line 3, column 1: duplicate key 'a'"


def test_broken_yaml_names_line_and_column() -> None:
    with pytest.raises(yaml_input.YamlInputError, match=r"is not valid YAML at line 2, column 1"):
        yaml_input.load("a: [1, 2\n")


def test_a_huge_value_in_a_message_is_shown_short_without_rendering_it_whole() -> None:
    from rollouts.problems import show

    class Endless(list):  # rendering all of it would never end
        def __iter__(self):
            while True:
                yield "lol"

    assert show(Endless([1])).endswith("...") and len(show(Endless([1]))) == 80
    assert show("x" * 10_000_000) == repr("x" * 76)[:77] + "..."
    assert show({"a": 1}) == '{"a": 1}'
