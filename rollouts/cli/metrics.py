"""``rollouts metrics``: per-iteration training metrics, and race scoring of evaluation files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
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
    _cell,
    _load_spec,
    _png,
    _positive_int,
    _run_option,
    _write_error,
    emit_json,
    err,
    progress,
    table,
)


def _episodes_per_iteration(args: argparse.Namespace, loaded: Any) -> tuple[int, str]:
    from rollouts.metrics import MetricsError  # noqa: PLC0415

    if args.episodes_per_iteration:
        return args.episodes_per_iteration, "--episodes-per-iteration"
    if loaded.hyperparameters is not None:
        return loaded.hyperparameters
    if args.experiment_file:
        spec = _load_spec(args.experiment_file)
        return spec.episodes_per_iteration, str(args.experiment_file)
    raise MetricsError(
        "episodes per iteration unknown: no hyperparameters.json found next to the "
        "metrics, one folder up or in an ip/ folder there; pass --episodes-per-iteration N "
        "or --experiment-file FILE"
    )


def cmd_metrics(args: argparse.Namespace) -> int:
    from rollouts import metrics as m  # noqa: PLC0415
    from rollouts import operate  # noqa: PLC0415

    loaded = None
    if args.window < 1:
        raise UsageError("--window must be at least 1")
    if args.run and (
        len(args.source) != 1 or Path(args.source[0]).exists() or "/" in args.source[0]
    ):
        raise UsageError("--run needs one experiment name as the source, not files or s3:// paths")
    try:
        with progress("loading metrics") as update:
            loaded = operate.load_metrics(args.source, lambda: common.aws(args), update, args.run)
    except m.MetricsError as error:
        code = getattr(error, "code", None) or (
            EXIT_USAGE if loaded_is_input(error) else EXIT_FAILURE
        )
        raise CliError(str(error), code) from None
    # Evaluation files are told apart by their rows and scored as a race, never mixed into
    # a worker's iterations.
    from rollouts import race  # noqa: PLC0415

    evaluations: list[m.WorkerMetrics] = []
    training: list[m.WorkerMetrics] = []
    for worker in loaded.workers:
        (evaluations if race.is_evaluation_file(worker) else training).append(worker)
    scored = (
        race.score(
            evaluations,
            consecutive=args.consecutive,
            off_track_penalty=args.off_track_penalty,
            collision_penalty=args.collision_penalty,
        )
        if evaluations
        else None
    )
    if not training:
        assert scored is not None
        return _race_output(scored, args, loaded.description)
    loaded.workers = training
    try:
        episodes, origin = _episodes_per_iteration(args, loaded)
        report = m.build_report(loaded.workers, episodes, args.workers or loaded.worker_count)
    except m.MetricsError as error:
        code = getattr(error, "code", None) or (
            EXIT_USAGE if loaded_is_input(error) else EXIT_FAILURE
        )
        raise CliError(str(error), code) from None
    if report.ignored:
        n = report.worker_count
        count_from = "--workers" if args.workers else "the stack's RolloutCount"
        for w in report.ignored:
            err(
                f"warning: ignoring {w.source} (worker {w.worker}): the run has {n} worker(s) "
                f"({count_from}), so only the metrics of workers 0..{n - 1} are used"
            )
    document = report.as_dict()
    document["source"] = loaded.description
    document["episodes_per_iteration_from"] = origin
    if scored is not None:
        document["race"] = scored.as_dict()
    phases = ("training", "evaluation") if args.phase == "all" else (args.phase,)
    rows = [r for r in report.rows if r.phase in phases]
    if args.plot:
        from rollouts.plot import plot  # noqa: PLC0415

        try:
            with progress(f"drawing {args.plot}"):
                document["plot"] = plot(report, args.plot, window=args.window, title=loaded.title)
        except OSError as error:
            raise _write_error(error, args.plot) from None
    if args.csv:
        _write_csv(m.to_csv(rows), args.csv)
    if args.json:
        emit_json(document)
    elif str(args.csv) != "-":
        _print_metrics(report, rows, document, args)
        if scored is not None:
            print("\nEvaluation files (scored apart from the training iterations):")
            _print_race(scored)
    return EXIT_OK


def _write_csv(text: str, path: Path) -> None:
    """CSV to a file, or to stdout for ``-``."""
    if str(path) == "-":
        sys.stdout.write(text)
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise _write_error(error, path) from None


def _race_output(scored: Any, args: argparse.Namespace, description: str) -> int:
    """``rollouts metrics`` on evaluation files only: trials, per-track scores, rankings."""
    from rollouts import race  # noqa: PLC0415

    document = {"source": description, "race": scored.as_dict()}
    if args.plot:
        try:
            with progress(f"drawing {args.plot}"):
                document["plot"] = race.plot_laps(scored, args.plot, title=description)
        except OSError as error:
            raise _write_error(error, args.plot) from None
    if args.csv:
        _write_csv(race.trials_csv(scored), args.csv)
    if args.json:
        emit_json(document)
    elif str(args.csv) != "-":
        print(f"Evaluation of {description}: {len(scored.trials)} trial(s)")
        _print_race(scored)
        if args.plot:
            print(f"\nplot: {args.plot}")
        if args.csv:
            print(f"csv: {args.csv}")
    return EXIT_OK


def _lap_time(value: float | None) -> str:
    """Lap times as race results show them: to the millisecond."""
    return "-" if value is None else f"{value:.3f}"


def _print_race(scored: Any) -> None:
    print(
        table(
            [
                "track",
                "trial",
                "status",
                "completion %",
                "lap s",
                "off track",
                "crashes",
                "resets",
                "penalty s",
            ],
            [
                [
                    t.track,
                    t.trial,
                    t.status,
                    t.completion_percentage,
                    _lap_time(t.lap_seconds),
                    t.off_track,
                    t.crashes,
                    t.resets,
                    t.penalty_seconds,
                ]
                for t in scored.trials
            ],
            indent="  ",
        )
    )
    k = scored.consecutive
    print("\nper track (lap times include penalties, as the simapp counts them):")
    print(
        table(
            [
                "track",
                "trials",
                "completed",
                "mean completion %",
                "best lap s",
                f"best {k} consecutive s",
                "total s",
                "off track",
                "crashes",
                "penalty s",
            ],
            [
                [
                    s.track,
                    s.trials,
                    s.completed,
                    s.mean_completion_percentage,
                    _lap_time(s.best_lap_seconds),
                    _lap_time(s.best_consecutive_seconds),
                    _lap_time(s.total_seconds),
                    s.off_track,
                    s.crashes,
                    s.penalty_seconds,
                ]
                for s in scored.tracks
            ],
            indent="  ",
        )
    )
    rankings = scored.rankings()
    if len(scored.tracks) > 1:
        print("\nrankings:")
        for name, order in rankings.items():
            print(f"  {name.replace('_', ' ')}: {', '.join(order) or '(none)'}")


def loaded_is_input(error: Exception) -> bool:
    """Malformed or missing metrics are bad input (exit 2); AWS trouble is a failure (1)."""
    return not getattr(error, "aws", False)


def _print_metrics(
    report: Any, rows: Sequence[Any], document: dict[str, Any], args: argparse.Namespace
) -> None:
    workers = report.worker_count
    print(
        f"Metrics of {document['source']}: {workers} worker(s), "
        f"{sum(len(w.episodes) for w in report.workers)} rows, {report.iterations} "
        f"iteration(s) of {report.episodes_per_iteration} episodes "
        f"(from {document['episodes_per_iteration_from']})"
    )
    for w in report.workers:
        print(f"  worker {w.worker}: {w.source} ({len(w.episodes)} rows)")
    for note in report.notes:
        print(f"note: {note}")
    shown = [r for r in rows if r.worker == "overall" or (workers > 1 and args.per_worker)]
    if args.last:
        keep = sorted({r.iteration for r in shown})[-args.last :]
        shown = [r for r in shown if r.iteration in keep]
    for phase in ("training", "evaluation"):
        phase_rows = [r for r in shown if r.phase == phase]
        if not phase_rows:
            continue
        scope = ", per worker and overall" if workers > 1 and args.per_worker else ""
        print(f"\n{phase} (per iteration{scope}):")
        print(
            table(
                [
                    "iter",
                    "worker",
                    "episodes",
                    "mean reward",
                    "best reward",
                    "mean progress %",
                    "completed %",
                    "best lap s",
                ],
                [
                    [
                        r.iteration,
                        r.worker,
                        r.episodes,
                        r.mean_reward,
                        r.best_reward,
                        r.mean_progress,
                        r.completion_rate * 100,
                        r.best_lap_seconds,
                    ]
                    for r in phase_rows
                ],
                indent="  ",
            )
        )
    if report.evaluation_trials:
        from rollouts.metrics import trial_summary  # noqa: PLC0415

        s = trial_summary(report.evaluation_trials)
        print(
            f"\nevaluation trials without an episode number (an evaluation job): {s['trials']} "
            f"trials, mean progress {s['mean_progress']:.1f} %, completed "
            f"{s['completion_rate'] * 100:.0f} %, best lap {_cell(s['best_lap_seconds'])} s"
        )
    if workers > 1 and not args.per_worker:
        print("\n(overall rows only; --per-worker adds one row per worker)")
    if args.plot:
        print(f"\nplot: {args.plot}")
    if args.csv:
        print(f"csv: {args.csv}")


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "metrics",
        help="per-iteration reward/progress of every worker; plots",
        description="Load every worker's metrics JSON (TrainingMetrics.json, "
        "TrainingMetrics_<i>.json, training_metrics.json) from a "
        "deployed experiment, an s3:// prefix, local files or "
        "folders; derive iterations; print per-iteration aggregates.",
        epilog="examples:\n"
        "  rollouts metrics reinvent-time-trial --plot curves.png\n"
        "  rollouts metrics ./downloaded/ --episodes-per-iteration 20 "
        "--csv out.csv\n"
        "  rollouts metrics s3://bucket/experiments/x --json",
        formatter_class=fmt,
    )
    p.add_argument(
        "source",
        nargs="+",
        metavar="EXPERIMENT_OR_PATH",
        help="experiment name, s3://bucket/prefix, or metrics file(s)/folder(s)",
    )
    _run_option(p)
    p.add_argument(
        "--episodes-per-iteration",
        type=_positive_int,
        metavar="N",
        help="num_episodes_between_training (default: from hyperparameters.json)",
    )
    p.add_argument(
        "--experiment-file",
        type=Path,
        metavar="FILE",
        help="take episodes per iteration from this experiment file",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="number of workers of the run (default: the stack's RolloutCount, else the "
        "highest worker index found + 1); files of workers N and above are ignored, "
        "with a warning",
    )
    p.add_argument(
        "--phase",
        choices=("training", "evaluation", "all"),
        default="all",
        help="rows to print/export (default all)",
    )
    p.add_argument(
        "--per-worker",
        action="store_true",
        help="also print one row per worker (JSON/CSV always have them)",
    )
    p.add_argument(
        "--last", type=_positive_int, metavar="N", help="print only the last N iterations"
    )
    p.add_argument(
        "--plot",
        type=_png,
        metavar="FILE.png",
        help="draw reward and progress per iteration into a PNG image (the name must end in .png)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=5,
        metavar="N",
        help="rolling mean window in iterations (default 5)",
    )
    p.add_argument(
        "--consecutive",
        type=_positive_int,
        default=3,
        metavar="K",
        help="evaluation files: rank by the best average of K consecutive complete laps "
        "(default 3)",
    )
    p.add_argument(
        "--off-track-penalty",
        type=float,
        default=2.0,
        metavar="S",
        help="evaluation files: the seconds the evaluation froze the car per off-track or "
        "reversal (the simapp's OFF_TRACK_PENALTY, default 2.0); shown, already in the lap time",
    )
    p.add_argument(
        "--collision-penalty",
        type=float,
        default=5.0,
        metavar="S",
        help="evaluation files: the same per crash (COLLISION_PENALTY, default 5.0)",
    )
    p.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="write the rows as CSV ('-': stdout): per iteration for training files, per trial "
        "for evaluation files",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _aws_options(p)
    p.set_defaults(func=cmd_metrics)
