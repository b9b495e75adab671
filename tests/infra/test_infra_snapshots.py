"""Snapshots of every stack for both backends (asset hashes masked), and deterministic synth.

A snapshot only says "something changed"; the other infra tests say whether it is right.
Update after an intended change with: .venv/bin/pytest tests/infra --snapshot-update
"""

from __future__ import annotations

from pathlib import Path

import pytest
from synth_support import Synthesis, masked, synthesize
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

STACKS = ["Platform", "reinvent-time-trial", "oa-multi-track", "h2b-continuous"]


@pytest.fixture
def json_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_snapshot(
    stack: str, each_backend: Synthesis, json_snapshot: SnapshotAssertion
) -> None:
    template = each_backend.templates[f"DeepRacerRollouts-{stack}"]
    assert masked(template) == json_snapshot(name=f"{each_backend.backend}-{stack}")


def test_synth_is_deterministic(batch: Synthesis, tmp_path: Path) -> None:
    """A second synthesis (fresh app, fresh output and staging dirs) is byte-identical,
    asset hashes included: no timestamps, no unordered iteration, no absolute paths."""
    again = synthesize(tmp_path / "out", tmp_path / "stage", backend="batch", experiment="all")
    assert again.templates.keys() == batch.templates.keys()
    for name, template in batch.templates.items():
        assert again.templates[name] == template, name
    first_assets = sorted(p.name for p in batch.outdir.glob("asset.*"))
    assert first_assets == sorted(p.name for p in again.outdir.glob("asset.*"))
