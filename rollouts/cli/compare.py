"""``rollouts compare``: runs side by side (curves overlaid, best and last iteration, evaluation
scores), labelled by the settings that differ."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from rollouts.cli import common
from rollouts.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    _aws_options,
    _png,
    _positive_int,
    _write_error,
    emit_json,
    progress,
    table,
)

SWEEP_SUFFIX = re.compile(r"-[0-9a-f]{6}$")


def _local_run(folder: Path, episodes: int | None) -> Any:
    from rollouts import compare, operate, race  # noqa: PLC0415
    from rollouts import metrics as m  # noqa: PLC0415

    def no_aws() -> Any:
        raise AssertionError("a local folder needs no AWS")

    loaded = operate.load_metrics([str(folder)], no_aws, lambda _t: None)
    report = _report(loaded, episodes, str(folder))

    def read(key: str) -> bytes | None:
        path = folder / key
        return path.read_bytes() if path.is_file() else None

    scored = None
    evaluations = sorted((folder / "evaluations").glob("*/"))  # none: an empty list
    if evaluations:
        legs = sorted(evaluations[-1].glob(f"*/{m.EVALUATION_LEG_FILE}"))
        files = [m.parse(p.read_bytes(), source=str(p), worker=i) for i, p in enumerate(legs)]
        scored = race.score(files) if files else None
    return compare.Run(str(folder), report, compare.run_settings(read), scored)


def _deployed_run(aws: Any, name: str, episodes: int | None) -> Any:
    from rollouts import compare, operate, race  # noqa: PLC0415

    loaded = operate.load_metrics([name], lambda: aws, lambda _t: None)
    report = _report(loaded, episodes, name)
    read, _list, where = operate.s3_run_reader(aws, name, None)
    bucket, _, prefix = where.removeprefix("s3://").partition("/")
    scored = None
    found = operate.evaluation_records(aws, bucket, prefix)
    if found:
        latest = found[-1]["evaluationId"]
        legs = operate.load_metrics(
            [f"s3://{bucket}/{prefix}/evaluations/{latest}"], lambda: aws, lambda _t: None
        )
        scored = race.score(legs.workers)
    return compare.Run(name, report, compare.run_settings(read), scored)


def _report(loaded: Any, episodes: int | None, name: str) -> Any:
    from rollouts import metrics as m  # noqa: PLC0415

    if episodes is None:
        if loaded.hyperparameters is None:
            raise m.MetricsError(
                f"{name}: episodes per iteration unknown (no hyperparameters.json in the run): "
                "pass --episodes-per-iteration N"
            )
        episodes = loaded.hyperparameters[0]
    return m.build_report(loaded.workers, episodes, loaded.worker_count)


def _sweep_variants(aws: Any, base: str) -> list[str]:
    """The deployed variants of a sweep: stacks named DeepRacerRollouts-<base>-<6 hex>."""
    from rollouts import operate  # noqa: PLC0415
    from rollouts.naming import stack_name  # noqa: PLC0415

    prefix = stack_name(base) + "-"
    cfn = aws.client("cloudformation")

    def names() -> list[str]:
        found = []
        for page in cfn.get_paginator("list_stacks").paginate():
            for s in page.get("StackSummaries", []):
                name = s["StackName"]
                if (
                    name.startswith(prefix)
                    and SWEEP_SUFFIX.search(name)
                    and len(name) == len(prefix) + 6
                    and s.get("StackStatus") != "DELETE_COMPLETE"
                ):
                    found.append(name.removeprefix(stack_name("")))
        return sorted(found)

    return list(operate._aws_call("cloudformation:ListStacks", names))


def cmd_compare(args: argparse.Namespace) -> int:
    from rollouts import compare, operate  # noqa: PLC0415
    from rollouts import metrics as m  # noqa: PLC0415
    from rollouts.spec import NAME_PATTERN  # noqa: PLC0415

    runs = []
    clients: list[Any] = []

    def aws() -> Any:  # one session and its clients for every source
        if not clients:
            clients.append(common.aws(args))
        return clients[0]

    try:
        with progress("loading runs") as update:
            sources: list[str] = []
            for source in args.sources:
                path = Path(source)
                if path.suffix in (".yaml", ".yml") and path.is_file():
                    sources += [s.name for s in common._load_variants(path)]
                else:
                    sources.append(source)
            if (
                len(sources) == 1
                and NAME_PATTERN.match(sources[0])
                and not Path(sources[0]).exists()
            ):
                # One name: a sweep's base name when its variants are deployed.
                variants = _sweep_variants(aws(), sources[0])
                sources = variants or sources
            for n, source in enumerate(sources, start=1):
                update(f"{n}/{len(sources)} {source}")
                path = Path(source)
                if path.is_dir():
                    runs.append(_local_run(path, args.episodes_per_iteration))
                elif NAME_PATTERN.match(source):
                    runs.append(_deployed_run(aws(), source, args.episodes_per_iteration))
                else:
                    raise CliError(
                        f"{source}: not a folder (a copy of a run's prefix), an experiment name, "
                        "a sweep's base name or an experiment file",
                        EXIT_USAGE,
                    )
    except m.MetricsError as error:
        raise CliError(str(error), getattr(error, "code", None) or EXIT_USAGE) from None
    except operate.OperateError as error:
        raise CliError(str(error), error.code) from None
    if len(runs) < 2:
        raise CliError("compare needs at least two runs", EXIT_USAGE)
    names = [r.name for r in runs]
    labelled = [
        compare.Run(r.name, r.report, r.settings, r.race, label)
        for r, label in zip(runs, compare.labels([r.settings for r in runs], names), strict=True)
    ]
    summaries = [compare.summarize(r) for r in labelled]
    document: dict[str, Any] = {
        "runs": [
            {
                "name": s.name,
                "label": s.label,
                "settings": dict(r.settings),
                "iterations": s.iterations,
                "best": {"iteration": s.best_iteration, "value": s.best_value, "by": s.best_by},
                "last": {
                    "iteration": s.last_iteration,
                    "mean_reward": s.last_reward,
                    "mean_progress": s.last_progress,
                },
                "evaluation": dict(s.evaluation),
            }
            for s, r in zip(summaries, labelled, strict=True)
        ]
    }
    if args.plot:
        try:
            document["plot"] = compare.plot_runs(labelled, args.plot)
        except OSError as error:
            raise _write_error(error, args.plot) from None
    if args.json:
        emit_json(document)
        return EXIT_OK
    print(f"{len(runs)} runs, labelled by what differs between them:")
    print(
        table(
            [
                "run",
                "label",
                "iterations",
                "best iter",
                "best",
                "by",
                "last iter",
                "last reward",
                "last progress %",
                "evaluation best lap s",
            ],
            [
                [
                    s.name,
                    s.label,
                    s.iterations,
                    s.best_iteration,
                    s.best_value,
                    s.best_by,
                    s.last_iteration,
                    s.last_reward,
                    s.last_progress,
                    ", ".join(
                        f"{track} {v['best_lap_seconds']:.3f}"
                        if v["best_lap_seconds"] is not None
                        else f"{track} -"
                        for track, v in s.evaluation.items()
                    )
                    or "-",
                ]
                for s in summaries
            ],
            indent="  ",
        )
    )
    if args.plot:
        print(f"\nplot: {args.plot}")
    return EXIT_OK


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="put runs side by side: curves overlaid, best/last iteration, evaluation scores",
        description="Compare runs: each run's per-iteration mean reward and progress overlaid "
        "in one PNG, a table of its best and last iteration and its latest evaluation's "
        "scores, labelled by the settings that differ between the runs (hyperparameters, "
        "track, race type, reward function).",
        epilog="examples:\n"
        "  rollouts compare lr-sweep --plot sweep.png          # the deployed variants of a sweep\n"
        "  rollouts compare experiments/lr-sweep.yaml --plot sweep.png\n"
        "  rollouts compare ./run-a/ ./run-b/ --json",
        formatter_class=fmt,
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="EXPERIMENT_OR_PATH",
        help="experiment names, a sweep's base name or file, or local copies of run prefixes",
    )
    p.add_argument(
        "--episodes-per-iteration",
        type=_positive_int,
        metavar="N",
        help="num_episodes_between_training when a run has no hyperparameters.json",
    )
    p.add_argument("--plot", type=_png, metavar="FILE.png", help="draw the curves into a PNG")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    _aws_options(p)
    p.set_defaults(func=cmd_compare)
