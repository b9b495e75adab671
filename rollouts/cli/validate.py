"""``rollouts validate``: check experiment files offline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rollouts.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    _existing_file,
    _problem_dict,
    emit_json,
    err,
    print_problems,
)


def _platform(args: argparse.Namespace) -> Any:
    """The platform settings `plan` and synth check against (cdk.json's context): the size rules
    of its backend apply to validate too. None (said on stderr) when it cannot be read."""
    from rollouts import plan  # noqa: PLC0415
    from rollouts.platform import PlatformConfigError, load_platform_config  # noqa: PLC0415

    cdk_json = args.cdk_json or plan.find_cdk_json(Path.cwd())
    try:
        return load_platform_config(plan.load_context(cdk_json, {}))
    except (ValueError, PlatformConfigError) as error:
        err(f"platform settings not checked ({error})")
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    from rollouts import plan  # noqa: PLC0415
    from rollouts.fargate import rollout_compute_problems  # noqa: PLC0415
    from rollouts.spec import SpecError, load_variants  # noqa: PLC0415
    from rollouts.sweep import shown_values  # noqa: PLC0415

    platform = _platform(args)
    results = []
    names: dict[str, str] = {}
    for path in args.files:
        entry: dict[str, Any] = {
            "file": str(path),
            "valid": True,
            "experiment": None,
            "problems": [],
        }
        try:
            specs = load_variants(path)
            compute = (
                [p for v in specs for p in rollout_compute_problems(v, platform, file=str(path))]
                if platform is not None
                else []
            )
            if compute:
                raise SpecError(compute)
        except SpecError as error:
            entry["valid"] = False
            entry["problems"] = [_problem_dict(p) for p in error.problems]
        else:
            spec = specs[0]
            if spec.sweep_base is not None:
                entry["sweep"] = {
                    "base": spec.sweep_base,
                    "variants": [{"name": v.name, "values": dict(v.variant)} for v in specs],
                }
            entry["experiment"] = spec.sweep_base or spec.name
            entry["warnings"] = plan.reward_import_warnings(spec.reward_function)
            entry["summary"] = (
                f"{spec.rollouts.count} worker(s), {spec.race.type} on "
                f"{spec.track}, {spec.episodes_per_iteration} episodes/iteration"
            )
            if spec.name in names:
                entry["valid"] = False
                entry["problems"] = [
                    {
                        "file": str(path),
                        "field": "name",
                        "value": spec.name,
                        "missing": False,
                        "message": f"is already used by {names[spec.name]}: experiment names must "
                        "be unique (they name the stack)",
                    }
                ]
            names.setdefault(spec.name, str(path))
        results.append(entry)
    valid = all(r["valid"] for r in results)
    if args.json:
        emit_json({"valid": valid, "files": results})
    else:
        for r in results:
            if r["valid"] and "sweep" in r:
                variants = r["sweep"]["variants"]
                print(f"ok       {r['file']}  (sweep {r['experiment']}: {len(variants)} variants)")
                for v in variants:
                    print(f"           {v['name']}: {shown_values(v['values'])}")
            elif r["valid"]:
                print(f"ok       {r['file']}  ({r['experiment']}: {r['summary']})")
            else:
                print(f"INVALID  {r['file']}  ({len(r['problems'])} problem(s))")
                print_problems(r["problems"])
            for warning in r.get("warnings") or []:
                print(f"  warning: {warning}")
        bad = sum(not r["valid"] for r in results)
        if bad:
            err(f"{bad} of {len(results)} file(s) invalid")
    return EXIT_OK if valid else EXIT_USAGE


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check experiment files offline",
        description="Check experiment files offline. Every problem is listed "
        "with file, field, value and what is allowed; exit 2 if any.",
        formatter_class=fmt,
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="experiment YAML file(s)")
    p.add_argument(
        "--cdk-json",
        type=_existing_file,
        metavar="PATH",
        help="cdk.json whose platform settings (backend, maxVcpus) the rollout sizes are "
        "checked against, as plan and synth do (default: nearest one)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_validate)
