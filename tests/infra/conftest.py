"""One synthesis per backend per test session, shared by every infrastructure test."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth_support import Synthesis, synthesize


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="session")
def batch(synth_root: Path) -> Synthesis:
    return synthesize(
        synth_root / "batch", synth_root / "staging-batch", backend="batch", experiment="all"
    )


@pytest.fixture(scope="session")
def robomaker(synth_root: Path) -> Synthesis:
    return synthesize(
        synth_root / "robomaker",
        synth_root / "staging-robomaker",
        backend="robomaker",
        experiment="all",
    )


@pytest.fixture(scope="session", params=["batch", "robomaker"])
def each_backend(request: pytest.FixtureRequest) -> Synthesis:
    return request.getfixturevalue(request.param)
