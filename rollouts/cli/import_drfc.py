"""``rollouts import-drfc``: a deepracer-for-cloud configuration as an experiment file."""

from __future__ import annotations

import argparse
from contextlib import suppress
from pathlib import Path
from typing import Any

from rollouts.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    UsageError,
    _existing_file,
    _problem_dict,
    _write_error,
    emit_json,
    print_problems,
    table,
)


def cmd_import_drfc(args: argparse.Namespace) -> int:
    from rollouts import drfc  # noqa: PLC0415
    from rollouts.spec import SpecError, load_experiment  # noqa: PLC0415

    out: Path = args.out
    if out.suffix not in (".yaml", ".yml"):
        raise UsageError(f"--out {out}: the experiment file must end in .yaml")
    if out.exists() and not args.force:
        raise UsageError(f"--out {out} exists; pass --force to overwrite it")
    envs = list(args.envs)
    system_env = None
    if envs and "worker" not in envs[0].name.lower():
        system_env = envs.pop(0)
    try:
        result = drfc.import_drfc(
            args.run_env,
            system_env,
            envs,
            out=out,
            name=args.name,
            model_metadata=args.model_metadata,
            hyperparameters=args.hyperparameters,
            reward_function=args.reward_function,
        )
    except drfc.DrfcError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    sources = [args.run_env, *([system_env] if system_env else []), *envs]
    text = drfc.to_yaml(result, sources)
    staged = out.with_name(f".{out.name}.importing.yaml")
    problems: list[dict[str, Any]] = []
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staged.write_text(text, encoding="utf-8")
        try:
            load_experiment(staged)
        except SpecError as error:
            problems = [{**_problem_dict(p), "file": str(out)} for p in error.problems]
            staged.unlink()
        else:
            staged.replace(out)
    except OSError as error:
        with suppress(OSError):
            staged.unlink(missing_ok=True)
        raise _write_error(error, out) from None
    document = {**result.as_dict(), "out": str(out), "valid": not problems, "problems": problems}
    if args.json:
        emit_json(document)
    else:
        if problems:
            print(
                f"NOT written: the imported experiment would not validate "
                f"({len(problems)} problem(s)):"
            )
            print_problems(problems)
        else:
            print(f"wrote {out} (experiment {result.experiment['name']!r}; it validates)")
        print(f"\nmapped ({len(result.mapped)}):")
        print(
            table(
                ["variable", "value", "file", "experiment field"],
                [[v.variable, v.value, v.source, v.target] for v in result.mapped],
                indent="  ",
            )
        )
        print(f"\nnot mapped ({len(result.unmapped)}):")
        print(
            table(
                ["variable", "value", "file", "why"],
                [[v.variable, v.value, v.source, v.reason] for v in result.unmapped],
                indent="  ",
            )
        )
        for note in result.notes:
            print(f"note: {note}")
    return EXIT_USAGE if problems else EXIT_OK


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "import-drfc",
        help="turn a deepracer-for-cloud config into an experiment",
        description="Turn deepracer-for-cloud env files (run.env, system.env, "
        "worker-<n>.env) into an experiment file that validates, "
        "listing every variable that could not be mapped and why. "
        "Model metadata, hyperparameters and reward function are "
        "read from local files (DRfC keeps them in S3).",
        epilog="example: rollouts import-drfc run.env system.env worker-2.env "
        "--out experiments/imported.yaml --reward-function reward.py",
        formatter_class=fmt,
    )
    p.add_argument("run_env", type=_existing_file, metavar="RUN_ENV", help="DRfC run.env")
    p.add_argument(
        "envs",
        nargs="*",
        type=_existing_file,
        metavar="SYSTEM_ENV|WORKER_ENV",
        help="system.env, then worker-<n>.env files",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="experiment YAML file to write"
    )
    p.add_argument("--name", help="experiment name (default: from DR_LOCAL_S3_MODEL_PREFIX)")
    p.add_argument(
        "--model-metadata",
        type=Path,
        metavar="FILE",
        help="model_metadata.json (default: next to RUN_ENV)",
    )
    p.add_argument(
        "--hyperparameters",
        type=Path,
        metavar="FILE",
        help="hyperparameters.json (default: next to RUN_ENV)",
    )
    p.add_argument(
        "--reward-function",
        type=Path,
        metavar="FILE",
        help="reward_function.py (default: next to RUN_ENV)",
    )
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--json", action="store_true", help="print the mapping report as JSON")
    p.set_defaults(func=cmd_import_drfc)
