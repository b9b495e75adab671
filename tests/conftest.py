"""Shared by every test: repository paths, and the CDK's JavaScript runtime on Node.js 22."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
# The shared fixtures sit beside the clone; ROLLOUTS_FIXTURES points elsewhere (`make mutation`
# runs the suite from a copy of the repository in mutants/).
FIXTURES = Path(os.environ.get("ROLLOUTS_FIXTURES", REPO.parent / "shared" / "fixtures"))

# jsii runs the CDK in a Node.js child process; use the project's own Node.js 22 (installed by
# `make setup` from the npm registry) rather than whatever `node` the machine has.
_LOCAL_NODE_BIN = REPO / "node_modules" / ".bin"
if (_LOCAL_NODE_BIN / "node").exists():
    os.environ["PATH"] = f"{_LOCAL_NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
# Tests never talk to AWS; make sure nothing tries to find credentials on an instance.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

# Property-based tests: the suite's default run stays within its time budget; deeper runs with
# `pytest --hypothesis-profile=deep` (README, "Tests"). Examples drive a fake cloud, so one is
# slow by hypothesis' measure and its deadline does not apply; the database stays out of the tree.
_PROPERTY_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "database": None,
}
settings.register_profile("suite", max_examples=25, **_PROPERTY_SETTINGS)
settings.register_profile("deep", max_examples=600, **_PROPERTY_SETTINGS)
settings.load_profile("suite")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES}: clone the repository beside shared/")
    return FIXTURES
