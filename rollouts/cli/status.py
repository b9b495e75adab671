"""``rollouts status``: a deployed run's trainer, rollouts and evaluations."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rollouts.cli import common
from rollouts.cli.common import (
    EXIT_OK,
    CliError,
    _aws_options,
    _experiment_name,
    _run_option,
    _seconds,
    emit_json,
    progress,
    table,
)


def cmd_status(args: argparse.Namespace) -> int:
    from rollouts import operate  # noqa: PLC0415

    aws = common.aws(args)
    interval = args.watch
    if interval and not args.json and sys.stdout.isatty():
        return _watch(aws, args, interval)
    first = True
    try:
        while True:
            with (
                progress(f"reading {operate.stack_name(args.experiment)}")
                if first
                else _nullcontext()
            ):
                status = operate.collect_status(aws, args.experiment, args.run)
            first = False
            if args.json:
                emit_json(status)
            else:
                print(format_status(status))
                if interval:
                    print(f"\n(refreshing every {interval:g} s; Ctrl-C to stop)")
            sys.stdout.flush()
            if not interval:
                return EXIT_OK
            time.sleep(interval)
    except KeyboardInterrupt:
        return EXIT_OK
    except operate.OperateError as error:
        raise CliError(str(error), error.code) from None


def _watch(aws: Any, args: argparse.Namespace, interval: float) -> int:
    """``--watch`` on a terminal: rich redraws the status in place (piped, each refresh is
    printed after the last, so a log keeps them all)."""
    from rich.console import Console  # noqa: PLC0415 (only on a terminal)
    from rich.live import Live  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    from rollouts import operate  # noqa: PLC0415

    try:
        with Live(console=Console(), auto_refresh=False, transient=False) as live:
            while True:
                status = operate.collect_status(aws, args.experiment, args.run)
                shown = format_status(status)
                live.update(
                    Text(f"{shown}\n\n(refreshing every {interval:g} s; Ctrl-C to stop)"),
                    refresh=True,
                )
                time.sleep(interval)
    except KeyboardInterrupt:
        return EXIT_OK
    except operate.OperateError as error:
        raise CliError(str(error), error.code) from None


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield None


def _checkpoint_text(saved: Mapping[str, Any] | None) -> str:
    if not saved:
        return "none yet (model/deepracer_checkpoints.json appears after the first one)"
    if "error" in saved:
        return str(saved["error"])
    return f"last {saved['last'] or '-'}, best {saved['best'] or '-'}"


def format_status(status: Mapping[str, Any]) -> str:
    t = status["trainer"]
    states = ", ".join(f"{n} {s}" for s, n in status["rollout_states"].items())
    lines = [
        f"Experiment {status['experiment']}  run {status['run_id']}  backend "
        f"{status['backend']}  (stack {status['stack']['name']}: {status['stack']['status']})",
        f"data {status['data'] or '-'}   checked {status['checked_at']}",
        "",
        f"trainer  {t['state']}"
        + (f" / {t['detail']}" if t["detail"] else "")
        + f"   started {t['started'] or '-'}"
        + (f"   ended {t['ended']}" if t["ended"] else "")
        + (f"\n         reason: {t['reason']}" if t["reason"] else ""),
        "         checkpoints: " + _checkpoint_text(status.get("checkpoints")),
        f"rollouts {len(status['rollouts'])}: {states}",
        "",
    ]
    rows = []
    for r in status["rollouts"]:
        last = r["last_episode"] or {}
        if "error" in last:
            episode = "unreadable"
        elif last:
            episode = (
                f"{last['episodes']} episodes, last ep {last['episode']}"
                + (f" (iter {last['iteration']})" if last.get("iteration") else "")
                + f" {last['phase']}: {last['status']}, {last['progress']:.0f} %"
            )
        else:
            episode = "no metrics yet"
        rows.append([r["worker"], r["state"], r["started"], r["job_id"], episode])
    lines.append(table(["worker", "state", "started", "job", "last metrics episode"], rows))
    for r in status["rollouts"]:
        if r["reason"]:
            lines.append(f"  worker {r['worker']}: {r['reason']}")
    if status.get("evaluations"):
        lines.append("\nevaluations:")
        lines.append(
            table(
                ["evaluation", "checkpoint", "legs", "state", "children", "job"],
                [
                    [
                        e["evaluation"],
                        e["checkpoint"],
                        ", ".join(e["legs"]),
                        e["state"],
                        ", ".join(f"{n} {s}" for s, n in e["children"].items()) or "-",
                        e["job_id"] or "-",
                    ]
                    for e in status["evaluations"]
                ],
                indent="  ",
            )
        )
        for e in status["evaluations"]:
            if e["reason"]:
                lines.append(f"  {e['evaluation']}: {e['reason']}")
    lines.extend(_supervision_lines(status))
    if status["video_streams"]:
        lines.append(f"\nvideo: {', '.join(status['video_streams'])}")
    return "\n".join(lines)


def _supervision_lines(status: Mapping[str, Any]) -> list[str]:
    """The run's outcome and the supervisor's actions, each with its reason."""
    lines: list[str] = []
    outcome = status.get("outcome")
    if outcome:
        lines.append(
            f"\noutcome  {outcome.get('kind', '?')}"
            + (f" at {outcome['at']}" if outcome.get("at") else "")
            + (f": {outcome['reason']}" if outcome.get("reason") else "")
        )
    actions = status.get("supervisor_actions") or []
    if actions:
        lines.append("\nsupervisor:")
        lines.append(
            table(
                ["at", "action", "rule", "reason"],
                [
                    [
                        a.get("at", "-"),
                        a.get("action", "-"),
                        a.get("rule", "-"),
                        a.get("reason", ""),
                    ]
                    for a in actions
                ],
                indent="  ",
            )
        )
    restarts = status.get("restarts") or {}
    if restarts:
        used = ", ".join(
            f"worker {w}: {n}" for w, n in sorted(restarts.items(), key=lambda i: int(i[0]))
        )
        lines.append(f"  restarts: {used}")
    return lines


def register(sub: Any, fmt: Any) -> None:
    p = sub.add_parser(
        "status",
        help="state of a deployed experiment's trainer and rollouts",
        description="From the deployed stack DeepRacerRollouts-<EXPERIMENT> "
        "(outputs and tags): the trainer's and every rollout's state, "
        "start time and last metrics episode.",
        epilog="example: rollouts status reinvent-time-trial --watch 30",
        formatter_class=fmt,
    )
    p.add_argument(
        "experiment", type=_experiment_name, metavar="EXPERIMENT", help="experiment name"
    )
    p.add_argument(
        "--watch",
        nargs="?",
        const=10.0,
        type=_seconds,
        metavar="SECONDS",
        help="refresh in place every SECONDS (default 10) until Ctrl-C",
    )
    _run_option(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    _aws_options(p)
    p.set_defaults(func=cmd_status)
