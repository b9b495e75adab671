"""What every command shares: errors and exit codes, output helpers, argument types."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TextIO

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


PROG = "rollouts"


class CliError(Exception):
    """Ends the command with a message on stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


# A rule of dashes under the header and nothing else: plain ASCII that diffs well in the docs'
# examples and reads the same in a log as on a terminal.
_PLAIN_RULE = "    \n    \n -  \n    \n    \n    \n    \n    \n"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, indent: str = "") -> str:
    """An aligned text table (rich lays it out); numbers are right-aligned, None shows as '-'.

    Rendered without colour and at a fixed, wide width, so a table reads the same on a terminal,
    in a pipe and in the docs (a table wider than the terminal wraps as any long line does)."""
    import io  # noqa: PLC0415

    from rich import box  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows)
        and any(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(headers))
    ]
    layout = Table(
        box=box.Box(_PLAIN_RULE),
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        header_style=None,
        highlight=False,
    )
    for header, is_number in zip(headers, numeric, strict=True):
        layout.add_column(header, justify="right" if is_number else "left", no_wrap=True)
    for row in rows:
        layout.add_row(*(_cell(value) for value in row))
    out = io.StringIO()
    Console(
        file=out, width=10_000, color_system=None, markup=False, emoji=False, highlight=False
    ).print(layout)
    return "\n".join((indent + line).rstrip() for line in out.getvalue().rstrip("\n").split("\n"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def emit_json(document: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(document, out, indent=2, sort_keys=False, default=str)
    out.write("\n")


def err(message: str) -> None:
    print(message, file=sys.stderr)


@contextmanager
def progress(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while a slow step runs (only on a terminal; silent when piped).

    Yields a function to update the message (e.g. "3/8 files"). rich draws it: its status
    spinner handles terminal width, redraws and clean-up, which a hand-written one got wrong on
    narrow terminals."""
    if not sys.stderr.isatty():
        yield lambda _text: None
        return
    from rich.console import Console  # noqa: PLC0415 (only on a terminal)

    with Console(stderr=True).status(message) as status:
        yield lambda text: status.update(f"{message}: {text}")


def _problem_dict(problem: Any) -> dict[str, Any]:
    value = problem.value
    missing = type(value) is object  # the spec's "missing" sentinel
    if not missing:
        try:
            json.dumps(value)
        except TypeError:
            value = str(value)
    return {
        "file": problem.file,
        "field": problem.field,
        "value": None if missing else value,
        "missing": missing,
        "message": problem.message,
    }


def _show_value(problem: dict[str, Any]) -> str:
    if problem["missing"]:
        return "(missing)"
    text = (
        json.dumps(problem["value"])
        if not isinstance(problem["value"], str)
        else repr(problem["value"])
    )
    return text if len(text) <= 40 else text[:37] + "..."


def print_problems(problems: Sequence[dict[str, Any]], out: TextIO | None = None) -> None:
    """Each problem's field, value and message; a sweep's problems under the variant they are
    of (their ``file`` names it)."""
    out = out or sys.stdout
    shown = None
    for p in problems:
        if " (sweep variant " in p["file"] and p["file"] != shown:
            shown = p["file"]
            print(f"  in{p['file'][p['file'].index(' (sweep variant ') :]}", file=out)
        print(f"  {p['field']}: {_show_value(p)}\n      {p['message']}", file=out)


def _load_spec(path: Path) -> Any:
    return _load_variants(path)[0]


def _load_variants(path: Path) -> list[Any]:
    """The experiment of a file, or each variant of its sweep; exit 2 on any problem."""
    from rollouts.spec import SpecError, load_variants  # noqa: PLC0415

    try:
        return load_variants(path)
    except SpecError as error:
        err(f"{path}: invalid experiment ({len(error.problems)} problem(s)):")
        print_problems([_problem_dict(p) for p in error.problems], out=sys.stderr)
        raise CliError("fix the experiment file (see `rollouts validate`)", EXIT_USAGE) from None


def _write_error(error: OSError, path: Path) -> CliError:
    """An output file or folder that cannot be written: a failure (exit 1)."""
    where = error.filename or path
    return CliError(f"cannot write {where}: {error.strerror or error}", EXIT_FAILURE)


def aws(args: argparse.Namespace) -> Any:
    from rollouts import operate  # noqa: PLC0415

    return operate.Aws(region=args.region, profile=args.profile)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(
            EXIT_USAGE,
            f"{self.prog}: error: {message}\nTry '{self.prog} --help' for more information.\n",
        )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 1:
        raise argparse.ArgumentTypeError("refresh at most once a second")
    return value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


REGION = re.compile(r"^[a-z]{2,}(?:-[a-z]+)+-[0-9]{1,2}$")


ACCOUNT = re.compile(r"^[0-9]{12}$")


TRAINING_JOB_ARN = re.compile(
    r"^arn:aws(?:-[a-z]+)*:sagemaker:(?P<region>[^:]*):(?P<account>[^:]*):"
    r"training-job/(?P<name>[A-Za-z0-9](?:-*[A-Za-z0-9]){0,62})$"
)


PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9!_.*()-]+$")


VIDEO_STREAM = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")


IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


BUCKET_MIN, BUCKET_MAX = 3, 63


PREFIX_MAX = 512  # leaves room in S3's 1024-byte keys for the keys below the prefix


BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")


BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def _region(text: str) -> str:
    if not REGION.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an AWS region code: expected lowercase words and a number "
            "joined by '-', like us-east-1 or eu-west-2"
        )
    return text


def _account(text: str) -> str:
    if not ACCOUNT.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an AWS account id: expected exactly 12 digits, like 123456789012"
        )
    return text


def _bucket_problem(name: str) -> str | None:
    """Which S3 general purpose bucket naming rule ``name`` breaks, or None."""
    if not BUCKET_MIN <= len(name) <= BUCKET_MAX:
        return f"is {len(name)} characters long"
    if not re.fullmatch(r"[a-z0-9.-]+", name):
        return "may only contain lowercase letters, digits, '.' and '-'"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return "must begin and end with a lowercase letter or digit"
    if ".." in name:
        return "must not contain two adjacent periods"
    if IPV4.match(name):
        return "must not be formatted as an IP address"
    for prefix in BUCKET_RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"must not begin with {prefix!r} (reserved by S3)"
    for suffix in BUCKET_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"must not end with {suffix!r} (reserved by S3)"
    return None


def _bucket(text: str) -> str:
    problem = _bucket_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an S3 bucket name: it {problem} (allowed: 3-63 lowercase "
            "letters, digits, '.' and '-', beginning and ending with a letter or digit, not "
            "like an IP address, no '..')"
        )
    return text


def _training_job_arn(text: str) -> str:
    match = TRAINING_JOB_ARN.match(text)
    if (
        not match
        or not REGION.match(match.group("region"))
        or not ACCOUNT.match(match.group("account"))
    ):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a SageMaker training job ARN: expected "
            "arn:aws:sagemaker:<region>:<12-digit account>:training-job/<name> (name: 1-63 "
            "letters, digits and '-', beginning and ending with a letter or digit)"
        )
    return text


def _prefix(text: str) -> str:
    segments = text.split("/")
    if len(text) > PREFIX_MAX or not all(
        PREFIX_SEGMENT.match(s) and s not in (".", "..") for s in segments
    ):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an S3 prefix this project writes: expected up to 512 characters "
            "of segments of letters, digits and !-_.*() joined by '/' (no leading, trailing "
            "or doubled '/', no '.' or '..' segment), like experiments/my-run"
        )
    return text


def _experiment_name(text: str) -> str:
    from rollouts.spec import NAME_PATTERN  # noqa: PLC0415

    if not NAME_PATTERN.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an experiment name: expected 1-40 lowercase letters, digits "
            "and '-', starting with a letter (the experiment file's `name`)"
        )
    return text


def _run_id(text: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,39}-[0-9a-f]{8}", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a run id: expected <experiment>-<8 hex digits>, e.g. "
            "reinvent-time-trial-1a2b3c4d (the stack's RunId output, run.json's runId)"
        )
    return text


def _run_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        type=_run_id,
        metavar="RUN_ID",
        help="an earlier run of the experiment (default: the latest, the stack's RunId)",
    )


def _png(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(
            f"{text!r}: the plot is written as a PNG image; give a file name ending in .png"
        )
    return path


def _aws_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("AWS")
    group.add_argument(
        "--region", type=_region, help="AWS region (default: AWS_REGION / your profile's)"
    )
    group.add_argument("--profile", help="AWS profile name (default: AWS_PROFILE or default)")
