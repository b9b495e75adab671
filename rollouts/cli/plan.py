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
    _load_spec,
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

    spec = _load_spec(args.file)
    cdk_json = args.cdk_json or plan.find_cdk_json(Path.cwd())
    try:
        context = plan.load_context(cdk_json, _context_overrides(args.context))
        platform = plan.platform_summary(context)
        problems = plan.compute_problems(spec, context, file=str(args.file))
    except ValueError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    if problems:
        raise CliError("\n".join(problems), EXIT_USAGE)
    document = plan.build_plan(spec, platform)
    document["platform_context"] = str(cdk_json) if cdk_json else None
    if args.requests is not None:
        document["requests"] = _write_requests(args, spec, context)
    if args.json:
        emit_json(document)
        return EXIT_OK
    _print_plan(document)
    return EXIT_OK


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
