"""``rollouts stop``: stop a run now (data kept)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rollouts.cli import common
from rollouts.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    CliError,
    UsageError,
    _aws_options,
    _experiment_name,
    emit_json,
    err,
    progress,
)


def cmd_stop(args: argparse.Namespace) -> int:
    from rollouts import operate  # noqa: PLC0415

    aws = common.aws(args)
    try:
        with progress(f"reading {operate.stack_name(args.experiment)}"):
            target = operate.stop_target(aws, args.experiment)
        if not args.json:
            print(operate.describe_stop(target))
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    "refusing to stop without confirmation: stdin is not a terminal; pass --yes"
                )
            try:
                answer = input(f"Stop run {target.run_id} of {args.experiment} now? [y/N] ")
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                err("not stopped")
                return EXIT_FAILURE
        with progress("stopping"):
            report = operate.stop(aws, target)
    except operate.OperateError as error:
        raise CliError(str(error), error.code) from None
    if args.json:
        emit_json(report)
    else:
        print(operate.format_stop(report))
    return EXIT_FAILURE if report["errors"] else EXIT_OK


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "stop",
        help="stop a run's trainer and rollouts now (data kept)",
        description="Stop the trainer and all rollouts of the experiment's "
        "current run now. S3 data is kept; the stack stays (destroy "
        "it with cdk destroy when done).",
        epilog="example: rollouts stop reinvent-time-trial --yes",
        formatter_class=fmt,
    )
    p.add_argument(
        "experiment", type=_experiment_name, metavar="EXPERIMENT", help="experiment name"
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="print what was stopped as JSON")
    _aws_options(p)
    p.set_defaults(func=cmd_stop)
