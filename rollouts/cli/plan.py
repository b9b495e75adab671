"""``rollouts plan``: what a deploy would run, offline."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rollouts.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    UsageError,
    _account,
    _bucket,
    _existing_file,
    _load_variants,
    _region,
    _run_id,
    _write_error,
    emit_json,
    err,
    table,
)


def _context_overrides(pairs: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"-c/--context expects key=value, got {pair!r}")
        overrides[key.strip()] = value
    return overrides


def cmd_plan(args: argparse.Namespace) -> int:
    from rollouts import plan  # noqa: PLC0415
    from rollouts.cost import run_cost  # noqa: PLC0415
    from rollouts.fargate import rollout_compute_problems  # noqa: PLC0415
    from rollouts.platform import load_platform_config, unknown_context_keys  # noqa: PLC0415

    variants = _load_variants(args.file)
    spec = variants[0]
    cdk_json = args.cdk_json or plan.find_cdk_json(Path.cwd())
    try:
        overrides = _context_overrides(args.context)
        context = plan.load_context(cdk_json, overrides)
        known = plan.load_context(cdk_json, {})
        for unknown in unknown_context_keys(overrides, known=known):
            err(f"warning: {unknown}")  # as synth says it
        platform = plan.platform_summary(context)
        config = load_platform_config(context)  # once for every variant
        problems = [
            str(problem)
            for variant in variants
            for problem in rollout_compute_problems(variant, config, file=str(args.file))
        ]
    except ValueError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    if problems:
        raise CliError("\n".join(problems), EXIT_USAGE)
    spot = bool(platform.get("spot", True)) and platform.get("backend") == "batch"
    if spec.sweep_base is not None:
        if args.requests is not None:
            raise UsageError("--requests is for one experiment: plan a sweep's variants one by one")
        return _plan_sweep(args, variants, platform, spot, cdk_json)
    document = plan.build_plan(spec, platform)
    document["cost"] = run_cost(spec, **_cost_settings(platform, spot)).as_dict()
    document["platform_context"] = str(cdk_json) if cdk_json else None
    if args.requests is not None:
        document["requests"] = _write_requests(args, spec, context)
    if args.json:
        emit_json(document)
        return EXIT_OK
    _print_plan(document)
    return EXIT_OK


def _cost_settings(platform: dict[str, Any], spot: bool) -> dict[str, Any]:
    """What of the platform changes a run's cost: Spot, the backend and public addresses."""
    return {
        "spot": spot,
        "backend": str(platform.get("backend", "batch")),
        "public_ip": platform.get("egress", "public") == "public",
    }


def _plan_sweep(
    args: argparse.Namespace,
    variants: list[Any],
    platform: dict[str, Any],
    spot: bool,
    cdk_json: Any,
) -> int:
    from rollouts import plan  # noqa: PLC0415
    from rollouts.cost import run_cost  # noqa: PLC0415
    from rollouts.sweep import shown_values  # noqa: PLC0415

    rows = []
    for variant in variants:
        cost = run_cost(variant, **_cost_settings(platform, spot))
        rows.append(
            {
                "name": variant.name,
                "stack": plan.stack_name(variant.name),
                "values": dict(variant.variant),
                "cost": cost.as_dict(),
                "plan": plan.build_plan(variant, platform),
            }
        )
    known = all(r["cost"]["worst_case_usd"] is not None for r in rows)
    # Summed exact and rounded once: nine lines of $0.6078 are $5.47, not 9 x $0.61.
    total = {
        "worst_case_usd": round(sum(r["cost"]["worst_case_exact"] for r in rows), 2)
        if known
        else None,
        "estimate_usd": round(sum(r["cost"]["estimate_exact"] for r in rows), 2) if known else None,
    }
    document = {
        "sweep": variants[0].sweep_base,
        "source": str(args.file),
        "variants": rows,
        "total_cost": total,
        "platform_context": str(cdk_json) if cdk_json else None,
    }
    if args.json:
        emit_json(document)
        return EXIT_OK
    print(f"Sweep {document['sweep']} ({args.file}): {len(rows)} variants, one stack each")
    print(
        table(
            ["variant", "values", "estimate $", "worst case $"],
            [
                [
                    r["name"],
                    shown_values(r["values"]),
                    r["cost"]["estimate_usd"],
                    r["cost"]["worst_case_usd"],
                ]
                for r in rows
            ],
            indent="  ",
        )
    )
    print(
        f"\ntotal: estimate ${_money(total['estimate_usd'])}, worst case "
        f"${_money(total['worst_case_usd'])} (worst case: every trainer's full max_run_minutes on "
        "demand)"
    )
    print(
        f"\nFirst variant in full ({rows[0]['name']}); the others differ only in the values above:\n"
    )
    first = rows[0]["plan"]
    first["cost"] = rows[0]["cost"]
    _print_plan(first)
    return EXIT_OK


def _money(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _print_cost(cost: dict[str, Any]) -> None:
    print(
        f"\nCost of one run (prices {cost['prices_region']}, {cost['prices_as_of']}, "
        "rollouts/data/prices.json):"
    )
    print(
        table(
            ["item", "quantity", "unit", "on demand $", "estimate $"],
            [
                [
                    line["item"],
                    line["quantity"],
                    line["unit"],
                    line["on_demand_usd"],
                    line["estimate_usd"],
                ]
                for line in cost["lines"]
            ],
            indent="  ",
        )
    )
    print(
        f"  estimate ${_money(cost['estimate_usd'])}, worst case ${_money(cost['worst_case_usd'])}"
        + (f"; no price for {', '.join(cost['missing_prices'])}" if cost["missing_prices"] else "")
    )


def _write_requests(args: argparse.Namespace, spec: Any, context: dict[str, Any]) -> list[str]:
    from rollouts import requests  # noqa: PLC0415
    from rollouts.platform import load_platform_config  # noqa: PLC0415

    config = load_platform_config(context)  # already checked by platform_summary
    values = {
        "bucket": args.bucket,
        "region": args.region,
        "account": args.account,
        "run_id": args.run_id,
    }
    if args.run_id and not args.run_id.startswith(f"{spec.name}-"):
        raise UsageError(f"--run-id {args.run_id!r} is not a run of {spec.name!r}")
    try:
        found = requests.build_requests(spec, config, values)
    except Exception as error:  # the fan-out's own errors: what a deploy would fail with
        raise CliError(f"{args.file}: a deploy would fail: {error}", EXIT_USAGE) from None
    try:
        written = requests.write_requests(args.requests, found)
    except OSError as error:
        raise _write_error(error, args.requests) from None
    if not args.json:
        err(f"wrote {len(written)} request file(s) to {args.requests}/")
    return [str(path) for path in written]


def _print_plan(p: dict[str, Any]) -> None:
    t, r = p["trainer"], p["rollouts"]
    print(f"Experiment {p['experiment']}  ({p['source']})")
    print(f"  stack      {p['stack']}   backend {p['backend']}")
    print(
        f"  race       {p['race']['type']}, car {p['race']['car']['name']} "
        f"({p['race']['car']['color']} {p['race']['car']['shell']})"
    )
    print(f"\nTrainer: {t['service']}")
    print(
        f"  {t['instance_type']}, {t['volume_gb']} GB volume, stops after "
        f"{t['max_run_minutes']} min; {t['algorithm']}, {t['action_space_type']} actions, "
        f"sensors {', '.join(t['sensors'])}"
    )
    if t["pretrained"]:
        pre = t["pretrained"]
        print(
            f"  starts from s3://{pre['bucket']}/{pre['prefix']} ({pre['checkpoint']} checkpoint)"
        )
    print(
        f"\nRollouts: {r['count']} x {r['service']}, {r['vcpus']} vCPU / {r['memory_mib']} MiB "
        f"each ({r['total_vcpus']} vCPU in total)"
    )
    if "rollout_compute" in r:
        print(
            f"  compute {r['rollout_compute']}{' with GPU' if r['gpu'] else ''}; "
            f"image {r['simapp_image']}"
        )
    e = p["episodes"]
    print(
        f"\nEpisodes: {e['per_iteration']} per iteration, split "
        f"{'/'.join(map(str, e['per_worker']))} over the workers; at most "
        f"{e['max_episodes']} episodes (~{e['max_iterations']} iterations)\n"
    )
    print(
        table(
            [
                "worker",
                "track",
                "race",
                "reverse",
                "change start",
                "alternate dir",
                "episodes/iter",
                "params",
                "video stream",
            ],
            [
                [
                    w["index"],
                    w["track"],
                    w["race_type"],
                    w["reverse_direction"],
                    w["change_start_position"],
                    w["alternate_driving_direction"],
                    w["episodes_per_iteration"],
                    w["params_key"].rsplit("/", 1)[-1],
                    w["video_stream"],
                ]
                for w in p["workers"]
            ],
            indent="  ",
        )
    )
    v = p["video"]
    video = f"on, {len(v['streams'])} Kinesis video stream(s)" if v["enabled"] else "off"
    print(f"\nVideo: {video}")
    s3 = p["s3"]
    print(f"\nS3 (s3://{s3['bucket']}/{s3['run_prefix']}/, a new <run-id> per deploy):")
    for key, value in s3["keys"].items():
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"  {key:<16} {shown}")
    if "cost" in p:
        _print_cost(p["cost"])
    if p["warnings"]:
        print()
        for warning in p["warnings"]:
            print(f"warning: {warning}")


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="show what a deploy would run (offline)",
        description="Show what `cdk deploy` of this experiment would run: "
        "trainer, each worker's track and race settings, compute, "
        "video streams, S3 layout, episodes per worker per "
        "iteration, and warnings about wasteful settings. No AWS "
        "calls.",
        epilog="examples:\n"
        "  rollouts plan experiments/default.yaml -c backend=robomaker\n"
        "  rollouts plan experiments/default.yaml --requests /tmp/requests --region eu-west-1",
        formatter_class=fmt,
    )
    p.add_argument("file", type=Path, metavar="FILE", help="experiment YAML file")
    p.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a platform setting of cdk.json's context (repeatable)",
    )
    p.add_argument(
        "--cdk-json",
        type=_existing_file,
        metavar="PATH",
        help="cdk.json to read platform defaults from (default: nearest one)",
    )
    group = p.add_argument_group(
        "requests",
        "write the API requests a deploy sends, with deploy-time values as <placeholders>",
    )
    group.add_argument(
        "--requests",
        type=Path,
        metavar="DIR",
        help="write CreateTrainingJob.json and SubmitJob.json (StartSimulationJobBatch-<i>.json "
        "with -c backend=robomaker) and files.json into DIR",
    )
    group.add_argument("--bucket", type=_bucket, help="the platform data bucket")
    group.add_argument("--region", type=_region, help="AWS region code, e.g. us-east-1")
    group.add_argument("--account", type=_account, help="AWS account id (12 digits)")
    group.add_argument("--run-id", type=_run_id, metavar="RUN_ID", help="the run id to show")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)
