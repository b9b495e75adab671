#!/usr/bin/env python3
"""The CDK app: the only place that reads context, environment and files.

It resolves everything into frozen, validated objects (``AppConfig``) before any construct is
built; bad input ends here with a clear message and exit code 2, and nothing is synthesized.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollouts.fargate import rollout_compute_problems
from rollouts.naming import platform_stack_name, stack_name
from rollouts.platform import (
    PlatformConfig,
    PlatformConfigError,
    load_platform_config,
    unknown_context_keys,
)
from rollouts.render import write_bundle
from rollouts.spec import ExperimentSpec, SpecError, load_experiments

ROOT = Path(__file__).resolve().parent
EXPERIMENTS_DIR = ROOT / "experiments"
STAGING_DIR = ROOT / "build" / "experiments"
PLATFORM_NAME = re.compile(r"^[A-Za-z0-9-]{1,32}$")


@dataclass(frozen=True)
class AppConfig:
    platform: PlatformConfig
    platform_name: str
    experiments: tuple[ExperimentSpec, ...]


class ConfigError(ValueError):
    """Bad context or experiment selection; the message says what and what is allowed."""


def experiment_files(selection: str, *, experiments_dir: Path = EXPERIMENTS_DIR) -> list[Path]:
    """``default`` | ``all`` | a name of ``experiments/<name>.yaml`` | a path; comma-separated."""
    available = sorted(experiments_dir.glob("*.yaml"))
    if selection.strip() == "all":
        if not available:
            raise ConfigError(
                f"cdk context 'experiment': 'all' found no *.yaml in {experiments_dir}"
            )
        return available
    files: list[Path] = []
    for item in (part.strip() for part in selection.split(",")):
        candidate = Path(item)
        if item.endswith((".yaml", ".yml")) or "/" in item:
            path = candidate if candidate.is_absolute() else Path.cwd() / candidate
        else:
            path = experiments_dir / f"{item}.yaml"
        if not path.is_file():
            names = ", ".join(p.stem for p in available) or "(none)"
            raise ConfigError(
                f"cdk context 'experiment': {item!r} is not an experiment file: use "
                f"'all', a path to a .yaml file, or one of: {names}"
            )
        files.append(path.resolve())
    return sorted(set(files))


def resolve_config(context: Mapping[str, Any]) -> AppConfig:
    try:
        platform = load_platform_config(context)
    except PlatformConfigError as error:
        raise ConfigError(str(error)) from None
    platform_name = str(context.get("platformName", "default"))
    if not PLATFORM_NAME.match(platform_name):
        raise ConfigError(
            f"cdk context 'platformName': {platform_name!r} is not allowed: "
            "letters, digits and '-', at most 32 characters"
        )
    files = experiment_files(str(context.get("experiment", "default")))
    try:
        specs = load_experiments(files, display_root=ROOT)
    except SpecError as error:
        raise ConfigError(str(error)) from None
    problems = [
        str(problem)
        for spec in specs
        for problem in rollout_compute_problems(spec, platform, file=_shown(spec.source))
    ]
    if problems:
        raise ConfigError("\n".join(problems))
    return AppConfig(
        platform=platform,
        platform_name=platform_name,
        experiments=tuple(sorted(specs, key=lambda s: s.name)),
    )


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def build_app(
    app: Any, config: AppConfig, *, staging_dir: Path = STAGING_DIR, nag: bool = True
) -> None:
    """Add the platform stack and one stack per experiment to ``app``."""
    # The CDK runs in a Node.js child process (jsii): imported only once the config is valid.
    import aws_cdk as cdk  # noqa: PLC0415
    from cdk_nag import AwsSolutionsChecks  # noqa: PLC0415

    from stacks.experiment_stack import ExperimentStack  # noqa: PLC0415
    from stacks.platform_stack import PlatformStack  # noqa: PLC0415

    # Environment-agnostic on purpose: the same templates for every account and region (and
    # for CI), no synth-time lookups; `cdk deploy` targets the account/region of its profile.
    platform_stack = PlatformStack(
        app,
        platform_stack_name(config.platform_name),
        config=config.platform,
        platform_name=config.platform_name,
        description="DeepRacer Rollouts platform: network, data, roles, simapp image, "
        f"{config.platform.backend} rollout backend",
    )
    for spec in config.experiments:
        stack = ExperimentStack(
            app,
            stack_name(spec.name),
            spec=spec,
            config=config.platform,
            platform_name=config.platform_name,
            bundle_dir=write_bundle(spec, staging_dir / spec.name),
            description=f"DeepRacer Rollouts experiment {spec.name}: 1 trainer + "
            f"{spec.rollouts.count} rollouts on {spec.track}",
        )
        # Deploy order only (values flow through SSM parameters, not exports).
        stack.add_stack_dependency(
            platform_stack, "the experiment reads the platform's SSM parameters"
        )
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


# The CDK CLI's own lock files (aws-cdk CLI, lib/api/rwlock: "synth.lock" while it synthesizes,
# "read.<pid>.<n>.lock" while it reads); its release of them ignores a file already gone (ENOENT).
_CLI_LOCK = re.compile(r"^(synth|read\.\d+\.\d+)\.lock$")


def _remove_empty_outdir(outdir: Path, *, existed: bool) -> None:
    """Leave no trace of a failed synth: the output directory goes when it holds nothing but the
    CLI's lock files (the CLI creates it before running the app; cdk.App() when run directly)."""
    if not outdir.is_dir():
        return
    entries = list(outdir.iterdir())
    if any(not (p.is_file() and _CLI_LOCK.match(p.name)) for p in entries):
        return  # an earlier synth's output: not ours to touch
    if existed and not entries:
        return  # an empty folder the user made
    for lock in entries:
        lock.unlink(missing_ok=True)
    outdir.rmdir()


def main() -> int:
    import aws_cdk as cdk  # noqa: PLC0415

    requested_outdir = os.environ.get("CDK_OUTDIR")
    outdir_existed = requested_outdir is not None and Path(requested_outdir).exists()
    app = cdk.App()
    # cdk.json holds every default; the CLI passes it merged with -c overrides, and a direct
    # `python app.py` run gets the same values from the file itself.
    defaults = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    context = {
        key: value if (value := app.node.try_get_context(key)) is not None else default
        for key, default in defaults.items()
        if not key.startswith("@")
    }
    for unknown in unknown_context_keys(app.node.get_all_context(), known=defaults):
        print(f"warning: {unknown}", file=sys.stderr)
    try:
        config = resolve_config(context)
    except ConfigError as error:
        print(f"error: {error}\nNothing was synthesized.", file=sys.stderr)
        _remove_empty_outdir(Path(app.outdir), existed=outdir_existed)
        return 2
    build_app(app, config)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
