"""``rollouts render``: the files a deploy writes, with deploy-time values filled in."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rollouts.cli.common import (
    EXIT_OK,
    TRAINING_JOB_ARN,
    VIDEO_STREAM,
    UsageError,
    _account,
    _bucket,
    _load_spec,
    _prefix,
    _region,
    _run_id,
    _training_job_arn,
    _write_error,
    emit_json,
)


def cmd_render(args: argparse.Namespace) -> int:
    from rollouts import contract, plan, render  # noqa: PLC0415
    from rollouts.naming import run_prefix  # noqa: PLC0415

    spec = _load_spec(args.file)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if args.bundle:
        try:
            render.write_bundle(spec, out)
        except OSError as error:
            raise _write_error(error, out) from None
        files = sorted(p.name for p in out.iterdir() if p.is_file())
        if args.json:
            emit_json({"out": str(out), "bundle": True, "files": files})
        else:
            print(f"wrote the deploy bundle ({len(files)} files, placeholders kept) to {out}/")
            for name in files:
                print(f"  {name}")
        return EXIT_OK
    count = spec.rollouts.count
    run_id = _render_run_id(args, spec.name)
    values: dict[str, str] = {
        "prefix": args.prefix
        or run_prefix(plan.experiment_prefix(spec.name), run_id or plan.RUN_ID_PLACEHOLDER)
    }
    for key in ("bucket", "region", "account", "training_job_arn"):
        if getattr(args, key):
            values[key] = getattr(args, key)
    _check_arn_matches(args)
    if args.video_streams is not None:
        streams = [s.strip() for s in args.video_streams.split(",")] if args.video_streams else []
        if len(streams) != count:
            raise UsageError(
                f"--video-streams lists {len(streams)} name(s), the experiment has "
                f"{count} worker(s)"
            )
        for stream in streams:
            if stream and not VIDEO_STREAM.match(stream):
                raise UsageError(
                    f"--video-streams: {stream!r} is not a Kinesis video stream name: expected "
                    "1-256 letters, digits, '_', '.' and '-' (or nothing, for no stream)"
                )
    else:
        streams = [plan.video_stream_name(spec.name, i) if spec.video else "" for i in range(count)]
    if args.keep_placeholders:
        values, streams = {}, [render.placeholder("video_stream")] * count
    texts = [
        _checked_fill(render.worker_yaml(spec, i), {**values, "video_stream": streams[i]})
        for i in range(count)
    ]
    if len(set(texts)) == 1:
        names = [contract.SHARED_PARAMS_NAME] * count
    else:
        names = [contract.worker_params_name(i) for i in range(count)]
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in dict(zip(names, texts, strict=True)).items():
            (out / name).write_text(text, encoding="utf-8")
    except OSError as error:
        raise _write_error(error, out) from None
    left = sorted(
        {name for name in render.PLACEHOLDERS if any(render.placeholder(name) in t for t in texts)}
    )
    run_id_left = any(plan.RUN_ID_PLACEHOLDER in t for t in texts)
    document = {
        "out": str(out),
        "files": sorted(set(names)),
        "workers": [{"index": i, "file": n} for i, n in enumerate(names)],
        "placeholders": left,
        "run_id_left": run_id_left,
    }
    if args.json:
        emit_json(document)
        return EXIT_OK
    print(f"wrote {len(set(names))} training params file(s) to {out}/")
    for i, name in enumerate(names):
        print(f"  worker {i}: {name}")
    if run_id_left:
        print(
            f"{plan.RUN_ID_PLACEHOLDER} is left in every S3 key: the fan-out picks the run id at "
            "deploy time; pass --run-id (the stack's RunId output, `rollouts status` shows it) "
            "or --prefix to render a deployed run's files"
        )
    if left:
        print(
            "placeholders left for deploy time: "
            + ", ".join(render.placeholder(n) for n in left)
            + "  (fill with --"
            + " --".join(n.replace("_", "-") for n in left)
            + ")"
        )
    return EXIT_OK


def _render_run_id(args: argparse.Namespace, experiment: str) -> str | None:
    """--run-id, else the run id the training job ARN names (the job is named after its run)."""
    if args.run_id and args.prefix:
        raise UsageError("--run-id and --prefix both name the run's prefix: give one of them")
    if args.run_id and not args.run_id.startswith(f"{experiment}-"):
        raise UsageError(
            f"--run-id {args.run_id} is not a run of {experiment}: run ids are "
            f"{experiment}-<8 hex digits>"
        )
    match = TRAINING_JOB_ARN.match(args.training_job_arn or "")
    named = match.group("name") if match else None
    if args.run_id and named and named != args.run_id:
        raise UsageError(
            f"--training-job-arn names training job {named}, but --run-id is {args.run_id}: "
            "a run's training job is named after it"
        )
    if args.run_id:
        return str(args.run_id)
    if named and named.startswith(f"{experiment}-") and not args.prefix:
        return named
    return None


def _check_arn_matches(args: argparse.Namespace) -> None:
    """The training job ARN's region and account must agree with --region / --account."""
    match = TRAINING_JOB_ARN.match(args.training_job_arn or "")
    if not match:
        return
    for flag, key in (("--region", "region"), ("--account", "account")):
        given = getattr(args, key)
        if given and given != match.group(key):
            raise UsageError(
                f"--training-job-arn {args.training_job_arn} is in {key} {match.group(key)}, "
                f"but {flag} is {given}"
            )


_FILL_FLAGS = {
    "bucket": "--bucket",
    "prefix": "--prefix",
    "region": "--region",
    "account": "--account",
    "training_job_arn": "--training-job-arn",
    "video_stream": "--video-streams",
}


def _checked_fill(template: str, values: dict[str, str]) -> str:
    """``render.fill`` (plain text substitution, as the fan-out Lambda does), which refuses a
    value that would break out of its YAML scalar (a quote or a line break)."""
    from rollouts import render  # noqa: PLC0415

    try:
        return render.fill(template, values)
    except ValueError:
        bad = sorted(k for k, v in values.items() if any(c in v for c in "'\n\r"))
        raise UsageError(
            "the values given would not survive in the params YAML"
            f" ({', '.join(_FILL_FLAGS.get(k, k) for k in bad)})"
            ": quotes and line breaks are not allowed"
        ) from None


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "render",
        help="write the training params YAML the workers read",
        description="Write the training params YAML file(s) exactly as the "
        "workers will read them: one training_params.yaml when all "
        "workers' files are identical, else training_params_<i>.yaml. "
        "Deploy-time values come from the flags; the prefix and video "
        "stream names are known offline; the rest stay visible as "
        "{{placeholders}}.",
        epilog="example: rollouts render experiments/default.yaml --out /tmp/params "
        "--bucket my-bucket --region eu-west-1",
        formatter_class=fmt,
    )
    p.add_argument("file", type=Path, metavar="FILE", help="experiment YAML file")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument("--bucket", type=_bucket, help="the platform data bucket (an S3 bucket name)")
    p.add_argument(
        "--prefix",
        type=_prefix,
        help="the run's S3 prefix (default: experiments/<name>/runs/<run-id>)",
    )
    p.add_argument(
        "--run-id",
        type=_run_id,
        metavar="RUN_ID",
        help="the deployed run whose files to render: the prefix becomes "
        "experiments/<name>/runs/RUN_ID (default: taken from --training-job-arn)",
    )
    p.add_argument("--region", type=_region, help="AWS region code, e.g. us-east-1")
    p.add_argument("--account", type=_account, help="AWS account id (12 digits)")
    p.add_argument(
        "--training-job-arn",
        type=_training_job_arn,
        metavar="ARN",
        help="the trainer's SageMaker training job ARN "
        "(arn:aws:sagemaker:<region>:<account>:training-job/<name>)",
    )
    p.add_argument(
        "--video-streams",
        metavar="NAMES",
        help="comma-separated Kinesis video stream names, one per worker, empty for none "
        "(default: rollouts-<name>-<i> when video is on, empty when off)",
    )
    p.add_argument(
        "--keep-placeholders",
        action="store_true",
        help="fill nothing: write the files as bundled for the fan-out",
    )
    p.add_argument(
        "--bundle",
        action="store_true",
        help="write the whole deploy bundle (params, reward function, model "
        "metadata, hyperparameters, manifest.json) with placeholders",
    )
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=cmd_render)
