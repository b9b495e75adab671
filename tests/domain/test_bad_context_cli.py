"""A bad -c value through the real CDK CLI: exit non-zero, the value named, no cdk.out left."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CDK = REPO / "node_modules" / ".bin" / "cdk"
pytestmark = pytest.mark.toolchain


def cdk_synth(outdir: Path, *context: str) -> subprocess.CompletedProcess[str]:
    assert CDK.exists(), "the project-local CDK CLI is missing: run `make setup`"
    args = [str(CDK), "synth", "--quiet", "-o", str(outdir)]
    for pair in context:
        args += ["-c", pair]
    env = {**os.environ, "PATH": f"{CDK.parent}:{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=180
    )


def test_bad_context_value_leaves_no_output_directory(tmp_path: Path) -> None:
    outdir = tmp_path / "cdk.out"
    result = cdk_synth(outdir, "azCount=99")
    assert result.returncode != 0
    assert "cdk context 'azCount': '99' is not allowed: an integer from 2 to 6" in result.stderr
    assert not outdir.exists(), sorted(p.name for p in outdir.iterdir())


def test_bad_context_value_keeps_an_earlier_synth(tmp_path: Path) -> None:
    outdir = tmp_path / "cdk.out"
    outdir.mkdir()
    (outdir / "manifest.json").write_text("{}")
    result = cdk_synth(outdir, "backend=ec2")
    assert result.returncode != 0 and "'backend': 'ec2' is not allowed" in result.stderr
    assert (outdir / "manifest.json").read_text() == "{}"
