"""Running app.py the way `cdk synth` does, for the tests of what synth refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_app(context_json: str, *, cwd: Path, outdir: Path) -> subprocess.CompletedProcess[str]:
    """Run app.py the way `cdk synth` does: context and output directory from the environment."""
    return subprocess.run(
        [sys.executable, str(REPO / "app.py")],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={
            "PATH": f"{REPO / 'node_modules' / '.bin'}:/usr/bin:/bin",
            "CDK_OUTDIR": str(outdir),
            "CDK_CONTEXT_JSON": context_json,
        },
    )
