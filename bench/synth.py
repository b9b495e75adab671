"""Synthesis benchmark: platform + K experiment stacks for K = 1, 10, 50 in one run.

Prints total time per K, the marginal time per extra experiment, peak memory of the Python
process and of the jsii Node.js process, and the wall time of the default `cdk synth`.
Figures, not a test: targets are marginal <= 0.25 s per experiment and default synth <= 10 s.

Usage: .venv/bin/python bench/synth.py [--ks 1,10,50]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PATH"] = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def node_children_peak_kib() -> int:
    """Peak resident memory (VmHWM) of this process's Node.js children (the jsii kernel)."""
    peak = 0
    me = str(os.getpid())
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == me and "node" in fields.get("Name", ""):
            peak = max(peak, int(fields.get("VmHWM", "0 kB").split()[0]))
    return peak


def synth_k(k: int, outdir: Path) -> float:
    import aws_cdk as cdk

    import app as cdk_app

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    base = cdk_app.resolve_config(context)
    spec = base.experiments[0]
    experiments = tuple(dataclasses.replace(spec, name=f"bench-{i:03d}") for i in range(k))
    config = dataclasses.replace(base, experiments=experiments)
    started = time.perf_counter()
    app = cdk.App(context=context, outdir=str(outdir))
    cdk_app.build_app(app, config, staging_dir=outdir / "staging")
    app.synth()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="1,10,50", help="comma-separated experiment counts")
    parser.add_argument("--skip-cli", action="store_true", help="skip timing `cdk synth`")
    args = parser.parse_args()
    ks = sorted({int(k) for k in args.ks.split(",")})

    import aws_cdk  # noqa: F401  (start the jsii kernel before timing)

    print(f"{'K':>4} {'total s':>9} {'per stack s':>12}")
    totals: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        synth_k(1, Path(tmp) / "warmup")  # first-use costs (jsii type loading) out of the way
        for k in ks:
            totals[k] = synth_k(k, Path(tmp) / f"k{k}")
            print(f"{k:>4} {totals[k]:>9.2f} {totals[k] / (k + 1):>12.3f}")
    if len(ks) > 1:
        low, high = ks[0], ks[-1]
        marginal = (totals[high] - totals[low]) / (high - low)
        print(f"marginal time per experiment ({low}->{high}): {marginal:.3f} s (target <= 0.25 s)")
    python_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"peak memory: python {python_peak / 1024:.0f} MiB, "
        f"jsii node {node_children_peak_kib() / 1024:.0f} MiB"
    )

    if not args.skip_cli:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            subprocess.run(
                [str(ROOT / "node_modules" / ".bin" / "cdk"), "synth", "--quiet", "--output", tmp],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            wall = time.perf_counter() - started
        print(
            f"default `cdk synth` (CLI + app + cdk-nag + validation), wall: {wall:.2f} s "
            f"(target <= 10 s, {os.cpu_count()} cores)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
