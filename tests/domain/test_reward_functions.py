"""The shipped reward functions run on the parameters the simapp passes and reward what they say."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REWARDS = Path(__file__).resolve().parents[2] / "experiments" / "rewards"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REWARDS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def params(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "all_wheels_on_track": True,
        "is_offtrack": False,
        "track_width": 1.0,
        "distance_from_center": 0.0,
        "waypoints": [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)],
        "closest_waypoints": [0, 1],
        "heading": 0.0,
        "x": 0.5,
        "y": 0.0,
        "is_left_of_center": True,
        "closest_objects": [],
        "objects_location": [],
        "objects_left_of_center": [],
    }
    return {**base, **changes}


@pytest.mark.parametrize("name", sorted(p.stem for p in REWARDS.glob("*.py")))
def test_off_track_earns_almost_nothing_and_centre_earns_most(name: str) -> None:
    reward = load(name).reward_function
    centre = reward(params())
    edge = reward(params(distance_from_center=0.45))
    off = reward(params(all_wheels_on_track=False, is_offtrack=True))
    assert 0 < off <= 1e-3 < edge < centre <= 1.0


def test_following_the_track_beats_crossing_it() -> None:
    reward = load("follow_center_line").reward_function
    assert reward(params(heading=0.0)) > reward(params(heading=45.0)) > reward(params(heading=90.0))


def test_an_object_close_ahead_in_the_same_lane_is_penalised() -> None:
    reward = load("avoid_objects").reward_function
    clear = reward(params())
    blocked = reward(
        params(
            closest_objects=[0, 1],
            objects_location=[(0.0, 0.0), (0.9, 0.0)],
            objects_left_of_center=[True, True],
        )
    )
    other_lane = reward(
        params(
            closest_objects=[0, 1],
            objects_location=[(0.0, 0.0), (0.9, 0.0)],
            objects_left_of_center=[False, False],
        )
    )
    assert blocked < other_lane == clear
