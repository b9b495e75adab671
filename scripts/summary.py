"""Print what `cdk deploy` would create from a synthesized cloud assembly (cdk.out).

Usage: python scripts/summary.py [cdk.out]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollouts.idle_cost import idle_monthly_cost, total  # noqa: E402

INTERESTING = {
    "AWS::KinesisVideo::Stream": "video streams",
    "AWS::Lambda::Function": "Lambda functions",
    "AWS::IAM::Role": "IAM roles",
    "AWS::EC2::Subnet": "subnets",
    "AWS::EC2::SecurityGroup": "security groups",
    "AWS::S3::Bucket": "buckets",
    "AWS::SSM::Parameter": "SSM parameters",
    "AWS::Batch::ComputeEnvironment": "Batch compute environments",
    "AWS::Batch::JobQueue": "Batch job queues",
    "AWS::RoboMaker::SimulationApplication": "RoboMaker applications",
}


def main(argv: list[str]) -> int:
    outdir = Path(argv[1] if len(argv) > 1 else "cdk.out")
    manifest_path = outdir / "manifest.json"
    if not manifest_path.is_file():
        print(f"error: {manifest_path} not found: run `make synth` first", file=sys.stderr)
        return 1
    manifest = json.loads(manifest_path.read_text())
    stacks = sorted(
        name
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    )
    print(f"\nSynthesized {len(stacks)} stacks into {outdir}/ (no AWS account was used):\n")
    for name in stacks:
        template = json.loads((outdir / f"{name}.template.json").read_text())
        counts = Counter(r["Type"] for r in template["Resources"].values())
        parts = [f"{counts[t]} {label}" for t, label in INTERESTING.items() if counts[t]]
        print(f"  {name}: {sum(counts.values())} resources ({', '.join(parts)})")
        for run in (
            r for r in template["Resources"].values() if r["Type"] == "Custom::RolloutsRun"
        ):
            props = run["Properties"]
            tracks = sorted(set(props["Worlds"]))
            print(
                f"    run: 1 trainer ({props['Trainer']['InstanceType']}, "
                f"max {int(props['Trainer']['MaxRuntimeSeconds']) // 60} min) + "
                f"{props['RolloutCount']} rollouts on {props['Backend']} "
                f"[{', '.join(tracks)}], video {'on' if props['VideoStreams'] else 'off'}"
            )
        if "Platform" in name:
            lines = idle_monthly_cost(template)
            print(
                f"    idle cost estimate (nothing running, us-east-1 list prices): "
                f"~${total(lines):.2f}/month"
            )
            for line in lines:
                print(f"      {line.item}: {line.count} -> ${line.monthly_usd:.2f}")
            print(
                "      + S3 storage of your data ($0.023/GB-month); training itself bills "
                "per second while it runs"
            )
    print(
        "\nDeploy: npx cdk deploy DeepRacerRollouts-Platform, then "
        "npx cdk deploy DeepRacerRollouts-<experiment> (see README)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
