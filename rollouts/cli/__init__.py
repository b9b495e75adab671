"""``rollouts``: the operator command line (also ``python -m rollouts``).

Exit codes: 0 ok, 1 failure (AWS or runtime), 2 bad usage or bad input. Every command has
``--help``; machine-readable output is ``--json`` (structures documented in ``docs/cli.md``).
Human output goes to stdout, progress and diagnostics to stderr.

One module per command (``rollouts/cli/<command>.py``, each with ``register`` for its
arguments); what they share is in ``common``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rollouts import __version__
from rollouts.cli import (
    compare,
    evaluate,
    export_model,
    import_drfc,
    metrics,
    plan,
    render,
    schema,
    status,
    stop,
    validate,
)
from rollouts.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    PROG,
    CliError,
    _Parser,
    err,
)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=PROG,
        description="Operate DeepRacer Rollouts experiments: check and preview experiment files "
        "(and sweeps, with their cost) offline, watch, evaluate and stop deployed runs, score "
        "and compare them, export a model for the car.",
        epilog="Exit codes: 0 ok, 1 failure, 2 bad usage or input. "
        "See docs/cli.md for examples and the --json formats.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    validate.register(sub, fmt)
    plan.register(sub, fmt)
    render.register(sub, fmt)
    metrics.register(sub, fmt)
    compare.register(sub, fmt)
    status.register(sub, fmt)
    evaluate.register(sub, fmt)
    export_model.register(sub, fmt)
    stop.register(sub, fmt)
    import_drfc.register(sub, fmt)
    schema.register(sub, fmt)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as error:
        err(f"{PROG} {args.command}: error: {error}")
        return error.code
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:
        # Last resorts, so that no AWS or file system error ends in a traceback: the AWS
        # helpers of rollouts.operate and the commands report these themselves, with context.
        if _is_botocore(error):  # (some botocore errors are OSErrors too: this goes first)
            err(f"{PROG} {args.command}: error: AWS: {error}")
            return EXIT_FAILURE
        if isinstance(error, OSError):
            where = f"{error.filename}: " if error.filename else ""
            err(f"{PROG} {args.command}: error: {where}{error.strerror or error}")
            return EXIT_FAILURE
        raise


def _is_botocore(error: Exception) -> bool:
    return type(error).__module__.split(".")[0] in ("botocore", "boto3")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
