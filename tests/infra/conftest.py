"""One synthesis per backend (and per platform variant) per test session, shared by every
infrastructure test; the cfn-lint test lints every one of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from synth_support import VARIANTS, Synthesis, synthesize


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


@pytest.fixture(scope="session")
def variant(synth_root: Path) -> Callable[[str], Synthesis]:
    """``variant("batch-nat")``: that variant's synthesis (default experiment), made once."""
    made: dict[str, Synthesis] = {}

    def get(name: str) -> Synthesis:
        if name not in made:
            made[name] = synthesize(
                synth_root / name, synth_root / f"staging-{name}", **VARIANTS[name]
            )
        return made[name]

    return get
