"""``rollouts export-model``: the car's model archive."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rollouts.cli import common
from rollouts.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    UsageError,
    _aws_options,
    _run_option,
    _write_error,
    emit_json,
    progress,
)


def cmd_export_model(args: argparse.Namespace) -> int:
    from rollouts import export_model as x  # noqa: PLC0415
    from rollouts import operate  # noqa: PLC0415

    if args.out.exists() and not args.force:
        raise UsageError(f"--out {args.out} exists: pass --force to overwrite it")
    source = Path(args.source)
    if source.is_dir():
        if args.run:
            raise UsageError("--run is for an experiment name, not a local folder")
        read, list_model = x.local_reader(source)
        where = str(source)
    elif "/" in args.source or source.suffix:
        raise UsageError(f"{args.source}: no such folder (a local copy of a run's prefix)")
    else:
        try:
            read, list_model, where = operate.s3_run_reader(common.aws(args), args.source, args.run)
        except operate.MetricsFetchError as error:
            raise CliError(str(error), getattr(error, "code", None) or EXIT_FAILURE) from None
    try:
        with progress(f"exporting checkpoint {args.checkpoint} of {where}"):
            done = x.export(args.checkpoint, read, list_model, where, args.out)
    except x.ExportError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    except operate.OperateError as error:  # S3 trouble: a failure (1) or bad AWS settings (2)
        raise CliError(str(error), error.code) from None
    except OSError as error:
        raise _write_error(error, args.out) from None
    document = {
        "source": where,
        "checkpoint": done.checkpoint,
        "chosen_by": done.chosen_by,
        "out": str(args.out),
        "members": list(done.members),
        "bytes": done.bytes_written,
    }
    if args.json:
        emit_json(document)
    else:
        print(
            f"wrote {args.out}: checkpoint {done.checkpoint} ({done.chosen_by}) of {where}, "
            f"{', '.join(done.members)}; load it on the car as its model archive"
        )
    return EXIT_OK


def _tar_gz(text: str) -> Path:
    path = Path(text)
    if not path.name.endswith(".tar.gz"):
        raise argparse.ArgumentTypeError(f"{text!r}: the archive's name must end in .tar.gz")
    return path


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "export-model",
        help="write the car's model archive (agent/model.pb + model_metadata.json)",
        description="Write the archive a physical DeepRacer loads, laid out as the training "
        "job's output/model.tar.gz: agent/model.pb (the chosen checkpoint's frozen graph, "
        "model/model_<N>.pb) and model_metadata.json, from a deployed run in S3 or a local "
        "copy of a run's prefix.",
        epilog="examples:\n"
        "  rollouts export-model reinvent-time-trial --checkpoint best --out car.tar.gz\n"
        "  rollouts export-model ./run-copy/ --checkpoint 12 --out car-12.tar.gz",
        formatter_class=fmt,
    )
    p.add_argument(
        "source",
        metavar="EXPERIMENT_OR_PATH",
        help="experiment name (its latest run, or --run) or a local copy of a run's prefix",
    )
    _run_option(p)
    p.add_argument(
        "--checkpoint",
        default="best",
        metavar="best|last|N",
        help="best or last (from model/deepracer_checkpoints.json) or a checkpoint number "
        "(default best)",
    )
    p.add_argument("--out", type=_tar_gz, required=True, metavar="FILE.tar.gz")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    _aws_options(p)
    p.set_defaults(func=cmd_export_model)
