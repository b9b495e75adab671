"""Synthesis helpers of the infrastructure tests (imported by their conftest and tests)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

ASSET_HASH = re.compile(r"[0-9a-f]{64}")

# Platform variants that tests synthesize besides the two backends' defaults. Each id says what
# it synthesizes, and each is linted (test_infra_policies.test_cfn_lint_passes_on_every_template).
VARIANTS: dict[str, dict[str, Any]] = {
    "batch-nat": {"backend": "batch", "egress": "nat", "azCount": 3},
    "robomaker-nat": {"backend": "robomaker", "egress": "nat", "azCount": 3},
    "batch-endpoints": {"backend": "batch", "egress": "endpoints"},
    "robomaker-endpoints": {"backend": "robomaker", "egress": "endpoints"},
    "batch-on-demand": {"backend": "batch", "spot": "false", "notifyEmail": "team@example.com"},
    "robomaker-gpu": {"backend": "robomaker", "gpu": "true"},
    "robomaker-container": {"backend": "robomaker", "robomakerAppForm": "container"},
}


def cdk_context(**overrides: Any) -> dict[str, Any]:
    """cdk.json's context (exactly what `cdk synth` sees) plus per-test overrides."""
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    return {**context, **overrides}


@dataclass(frozen=True)
class Synthesis:
    backend: str
    outdir: Path
    templates: Mapping[str, dict[str, Any]]  # stack name -> template
    warnings: tuple[str, ...] = ()

    @property
    def platform(self) -> dict[str, Any]:
        return self.templates["DeepRacerRollouts-Platform"]

    def experiment(self, name: str) -> dict[str, Any]:
        return self.templates[f"DeepRacerRollouts-{name}"]


def synthesize(outdir: Path, staging: Path, **overrides: Any) -> Synthesis:
    import aws_cdk as cdk

    import app as cdk_app

    context = cdk_context(**overrides)
    config = cdk_app.resolve_config(context)
    app = cdk.App(context=context, outdir=str(outdir))
    cdk_app.build_app(app, config, staging_dir=staging)
    assembly = app.synth()
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    warnings = tuple(
        str(message.entry.data)
        for stack in assembly.stacks
        for message in stack.messages
        if str(message.level).endswith("WARNING")
    )
    return Synthesis(
        backend=config.platform.backend, outdir=outdir, templates=templates, warnings=warnings
    )


def masked(template: Mapping[str, Any]) -> Any:
    """The template with asset hashes replaced, so snapshots survive code changes elsewhere."""
    return json.loads(ASSET_HASH.sub("<asset-hash>", json.dumps(template, sort_keys=True)))
