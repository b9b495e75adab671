"""``rollouts evaluate``: evaluate a run's checkpoint on tracks."""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from rollouts.cli import common
from rollouts.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    UsageError,
    _aws_options,
    _experiment_name,
    _positive_int,
    _run_option,
    emit_json,
    progress,
)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rollouts import evaluations, operate  # noqa: PLC0415
    from rollouts.contract import RACE_TYPES, world_names  # noqa: PLC0415

    tracks = [t.strip() for t in args.tracks.split(",") if t.strip()]
    worlds = world_names()
    for track in tracks:
        if track not in worlds:
            close = difflib.get_close_matches(track, worlds, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise UsageError(
                f"--tracks: {track!r} is not a simapp track (rollouts/data/worlds.txt){hint}"
            )
    if args.race_type and args.race_type not in RACE_TYPES:
        raise UsageError(f"--race-type {args.race_type!r}: one of {', '.join(RACE_TYPES)}")
    settings = {
        "tracks": tuple(tracks),
        "both_directions": args.both_directions,
        "trials": args.trials,
        "checkpoint": args.checkpoint,
        "race_type": args.race_type,
        "is_continuous": args.continuous,
        "number_of_resets": args.resets,
        "off_track_penalty": args.off_track_penalty,
        "collision_penalty": args.collision_penalty,
    }
    planning = evaluations.evaluation_modules()["plan"]
    # Every setting is checked before any AWS call: a bad one changes nothing, not even a record.
    bad = planning.Settings(**settings).problems()
    if bad:
        raise UsageError("; ".join(f"evaluate {problem}" for problem in bad))
    plan_errors = planning.EvaluationError
    try:
        with progress(f"starting an evaluation of {args.experiment}"):
            started = evaluations.start_evaluation(
                common.aws(args), args.experiment, args.run, settings
            )
    except plan_errors as error:
        raise CliError(str(error), EXIT_USAGE) from None
    except operate.OperateError as error:
        raise CliError(str(error), error.code) from None
    if args.json:
        emit_json(started)
    else:
        legs = ", ".join(leg["name"] for leg in started.get("legs", []))
        print(
            f"evaluation {started['evaluationId']} of run {started['runId']} "
            f"(checkpoint {started['checkpoint']}): {started['status']}"
            + (f" as Batch job {started['jobId']}" if started.get("jobId") else "")
        )
        print(f"  legs: {legs}")
        if started.get("reason"):
            print(f"  reason: {started['reason']}")
        print(f"  results: {started['results']} (rollouts metrics {started['results']})")
    return EXIT_OK if started["status"] in ("SUBMITTED", "ALREADY_STARTED") else EXIT_FAILURE


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a run's checkpoint on tracks (one Batch array job, no trainer)",
        description="Evaluate a deployed run: copy the chosen checkpoint under the run's "
        "evaluations/<id>/, write one evaluation params file per track and direction, and "
        "submit one Batch array job (one child per leg) on the experiment's own queue. "
        "Results (metrics.json, simtraces, mp4) land under each leg's folder; `rollouts "
        "status` shows evaluations and `rollouts stop` stops them.",
        epilog="examples:\n"
        "  rollouts evaluate reinvent-time-trial --tracks reInvent2019_track,Spain_track "
        "--both-directions\n"
        "  rollouts evaluate reinvent-time-trial --checkpoint 12 --tracks Spain_track --trials 5",
        formatter_class=fmt,
    )
    p.add_argument(
        "experiment", type=_experiment_name, metavar="EXPERIMENT", help="experiment name"
    )
    _run_option(p)
    p.add_argument(
        "--tracks", required=True, metavar="A,B", help="comma-separated simapp track names"
    )
    p.add_argument(
        "--both-directions",
        action="store_true",
        help="also drive each track in reverse (a second leg per track)",
    )
    p.add_argument(
        "--trials", type=_positive_int, default=3, metavar="K", help="laps per leg (default 3)"
    )
    p.add_argument(
        "--checkpoint",
        default="best",
        metavar="best|last|N",
        help="which checkpoint (default best, from model/deepracer_checkpoints.json)",
    )
    p.add_argument(
        "--race-type",
        metavar="TYPE",
        help="TIME_TRIAL, or the run's own race type (default: the run's)",
    )
    p.add_argument(
        "--continuous", action="store_true", help="drive the trials as one continuous run"
    )
    p.add_argument(
        "--resets",
        type=int,
        default=0,
        metavar="N",
        help="resets allowed per trial (0: an off-track ends it; else at least 2)",
    )
    p.add_argument("--off-track-penalty", type=float, default=2.0, metavar="S")
    p.add_argument("--collision-penalty", type=float, default=5.0, metavar="S")
    p.add_argument("--json", action="store_true", help="print the evaluation's record as JSON")
    _aws_options(p)
    p.set_defaults(func=cmd_evaluate)
