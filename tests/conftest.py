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
# The suite's run is derandomized: the same sequences on every run (CI and mutation runs stay
# reproducible); the deep profile explores new ones each time.
settings.register_profile("suite", max_examples=25, derandomize=True, **_PROPERTY_SETTINGS)
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


# Figures a test reports with `record_property("explored", ...)` (the property-based tests: how
# many sequences and steps they explored), shown at the end of the run, also from xdist workers.
_EXPLORED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _EXPLORED.extend(str(value) for name, value in report.user_properties if name == "explored")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _EXPLORED:
        terminalreporter.write_line(line)
