"""``rollouts``: the operator command line (also ``python -m rollouts``).

Exit codes: 0 ok, 1 failure (AWS or runtime), 2 bad usage or bad input. Every command has
``--help``; machine-readable output is ``--json`` (structures documented in ``docs/cli.md``).
Human output goes to stdout, progress and diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn, TextIO

from rollouts import __version__

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


# ----------------------------------------------------------------------------- output helpers


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, indent: str = "") -> str:
    """A plain aligned text table; numbers are right-aligned, None shows as '-'."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows)
        and any(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return (indent + "  ".join(parts)).rstrip()

    rule = indent + "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


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

    Yields a function to update the message (e.g. "3/8 files")."""
    if not sys.stderr.isatty():
        yield lambda _text: None
        return
    state = {"text": message}
    done = threading.Event()

    def spin() -> None:
        frames = "|/-\\"
        i = 0
        while not done.wait(0.1):
            sys.stderr.write(f"\r{frames[i % 4]} {state['text']}\x1b[K")
            sys.stderr.flush()
            i += 1

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield lambda text: state.update(text=f"{message}: {text}")
    finally:
        done.set()
        thread.join()
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


# ----------------------------------------------------------------------------- validate


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
    out = out or sys.stdout
    for p in problems:
        print(f"  {p['field']}: {_show_value(p)}\n      {p['message']}", file=out)


def cmd_validate(args: argparse.Namespace) -> int:
    from rollouts.spec import SpecError, load_experiment  # noqa: PLC0415

    results = []
    names: dict[str, str] = {}
    for path in args.files:
        entry: dict[str, Any] = {
            "file": str(path),
            "valid": True,
            "experiment": None,
            "problems": [],
        }
        try:
            spec = load_experiment(path)
        except SpecError as error:
            entry["valid"] = False
            entry["problems"] = [_problem_dict(p) for p in error.problems]
        else:
            entry["experiment"] = spec.name
            entry["summary"] = (
                f"{spec.rollouts.count} worker(s), {spec.race.type} on "
                f"{spec.track}, {spec.episodes_per_iteration} episodes/iteration"
            )
            if spec.name in names:
                entry["valid"] = False
                entry["problems"] = [
                    {
                        "file": str(path),
                        "field": "name",
                        "value": spec.name,
                        "missing": False,
                        "message": f"is already used by {names[spec.name]}: experiment names must "
                        "be unique (they name the stack)",
                    }
                ]
            names.setdefault(spec.name, str(path))
        results.append(entry)
    valid = all(r["valid"] for r in results)
    if args.json:
        emit_json({"valid": valid, "files": results})
    else:
        for r in results:
            if r["valid"]:
                print(f"ok       {r['file']}  ({r['experiment']}: {r['summary']})")
            else:
                print(f"INVALID  {r['file']}  ({len(r['problems'])} problem(s))")
                print_problems(r["problems"])
        bad = sum(not r["valid"] for r in results)
        if bad:
            err(f"{bad} of {len(results)} file(s) invalid")
    return EXIT_OK if valid else EXIT_USAGE


def _load_spec(path: Path) -> Any:
    from rollouts.spec import SpecError, load_experiment  # noqa: PLC0415

    try:
        return load_experiment(path)
    except SpecError as error:
        err(f"{path}: invalid experiment ({len(error.problems)} problem(s)):")
        print_problems([_problem_dict(p) for p in error.problems], out=sys.stderr)
        raise CliError("fix the experiment file (see `rollouts validate`)", EXIT_USAGE) from None


# ----------------------------------------------------------------------------- plan


def _context_overrides(pairs: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"-c/--context expects key=value, got {pair!r}")
        overrides[key.strip()] = value
    return overrides


def cmd_plan(args: argparse.Namespace) -> int:
    from rollouts import plan  # noqa: PLC0415

    spec = _load_spec(args.file)
    cdk_json = args.cdk_json or plan.find_cdk_json(Path.cwd())
    try:
        context = plan.load_context(cdk_json, _context_overrides(args.context))
        platform = plan.platform_summary(context)
        problems = plan.compute_problems(spec, context, file=str(args.file))
    except ValueError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    if problems:
        raise CliError("\n".join(problems), EXIT_USAGE)
    document = plan.build_plan(spec, platform)
    document["platform_context"] = str(cdk_json) if cdk_json else None
    if args.requests is not None:
        document["requests"] = _write_requests(args, spec, context)
    if args.json:
        emit_json(document)
        return EXIT_OK
    _print_plan(document)
    return EXIT_OK


def _write_requests(args: argparse.Namespace, spec: Any, context: dict[str, Any]) -> list[str]:
    from rollouts import requests  # noqa: PLC0415
    from rollouts.platform import load_platform_config  # noqa: PLC0415

    config = load_platform_config(context)  # already checked by platform_summary
    values = {
        "bucket": args.bucket,
        "region": args.region,
        "account": args.account,
        "run_id": args.run_id,
    }
    if args.run_id and not args.run_id.startswith(f"{spec.name}-"):
        raise UsageError(f"--run-id {args.run_id!r} is not a run of {spec.name!r}")
    try:
        found = requests.build_requests(spec, config, values)
    except Exception as error:  # the fan-out's own errors: what a deploy would fail with
        raise CliError(f"{args.file}: a deploy would fail: {error}", EXIT_USAGE) from None
    try:
        written = requests.write_requests(args.requests, found)
    except OSError as error:
        raise _write_error(error, args.requests) from None
    if not args.json:
        err(f"wrote {len(written)} request file(s) to {args.requests}/")
    return [str(path) for path in written]


def _print_plan(p: dict[str, Any]) -> None:
    t, r = p["trainer"], p["rollouts"]
    print(f"Experiment {p['experiment']}  ({p['source']})")
    print(f"  stack      {p['stack']}   backend {p['backend']}")
    print(
        f"  race       {p['race']['type']}, car {p['race']['car']['name']} "
        f"({p['race']['car']['color']} {p['race']['car']['shell']})"
    )
    print(f"\nTrainer: {t['service']}")
    print(
        f"  {t['instance_type']}, {t['volume_gb']} GB volume, stops after "
        f"{t['max_run_minutes']} min; {t['algorithm']}, {t['action_space_type']} actions, "
        f"sensors {', '.join(t['sensors'])}"
    )
    if t["pretrained"]:
        pre = t["pretrained"]
        print(
            f"  starts from s3://{pre['bucket']}/{pre['prefix']} ({pre['checkpoint']} checkpoint)"
        )
    print(
        f"\nRollouts: {r['count']} x {r['service']}, {r['vcpus']} vCPU / {r['memory_mib']} MiB "
        f"each ({r['total_vcpus']} vCPU in total)"
    )
    if "rollout_compute" in r:
        print(
            f"  compute {r['rollout_compute']}{' with GPU' if r['gpu'] else ''}; "
            f"image {r['simapp_image']}"
        )
    e = p["episodes"]
    print(
        f"\nEpisodes: {e['per_iteration']} per iteration, split "
        f"{'/'.join(map(str, e['per_worker']))} over the workers; at most "
        f"{e['max_episodes']} episodes (~{e['max_iterations']} iterations)\n"
    )
    print(
        table(
            [
                "worker",
                "track",
                "race",
                "reverse",
                "change start",
                "alternate dir",
                "episodes/iter",
                "params",
                "video stream",
            ],
            [
                [
                    w["index"],
                    w["track"],
                    w["race_type"],
                    w["reverse_direction"],
                    w["change_start_position"],
                    w["alternate_driving_direction"],
                    w["episodes_per_iteration"],
                    w["params_key"].rsplit("/", 1)[-1],
                    w["video_stream"],
                ]
                for w in p["workers"]
            ],
            indent="  ",
        )
    )
    v = p["video"]
    video = f"on, {len(v['streams'])} Kinesis video stream(s)" if v["enabled"] else "off"
    print(f"\nVideo: {video}")
    s3 = p["s3"]
    print(f"\nS3 (s3://{s3['bucket']}/{s3['run_prefix']}/, a new <run-id> per deploy):")
    for key, value in s3["keys"].items():
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"  {key:<16} {shown}")
    if p["warnings"]:
        print()
        for warning in p["warnings"]:
            print(f"warning: {warning}")


# ----------------------------------------------------------------------------- render


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
    values: dict[str, str] = {
        "prefix": args.prefix
        or run_prefix(plan.experiment_prefix(spec.name), plan.RUN_ID_PLACEHOLDER)
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
    document = {
        "out": str(out),
        "files": sorted(set(names)),
        "workers": [{"index": i, "file": n} for i, n in enumerate(names)],
        "placeholders": left,
    }
    if args.json:
        emit_json(document)
        return EXIT_OK
    print(f"wrote {len(set(names))} training params file(s) to {out}/")
    for i, name in enumerate(names):
        print(f"  worker {i}: {name}")
    if left:
        print(
            "placeholders left for deploy time: "
            + ", ".join(render.placeholder(n) for n in left)
            + "  (fill with --"
            + " --".join(n.replace("_", "-") for n in left)
            + ")"
        )
    return EXIT_OK


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


def _write_error(error: OSError, path: Path) -> CliError:
    """An output file or folder that cannot be written: a failure (exit 1)."""
    where = error.filename or path
    return CliError(f"cannot write {where}: {error.strerror or error}", EXIT_FAILURE)


# ----------------------------------------------------------------------------- metrics


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
            loaded = operate.load_metrics(args.source, lambda: _aws(args), update, args.run)
    except m.MetricsError as error:
        code = getattr(error, "code", None) or (
            EXIT_USAGE if loaded_is_input(error) else EXIT_FAILURE
        )
        raise CliError(str(error), code) from None
    # Evaluation files are told apart by their rows and scored as a race, never mixed into
    # a worker's iterations.
    from rollouts import race  # noqa: PLC0415

    evaluations = [w for w in loaded.workers if race.is_evaluation_file(w)]
    training = [w for w in loaded.workers if not race.is_evaluation_file(w)]
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
        text = m.to_csv(rows)
        if str(args.csv) == "-":
            sys.stdout.write(text)
        else:
            try:
                args.csv.write_text(text, encoding="utf-8")
            except OSError as error:
                raise _write_error(error, args.csv) from None
    if args.json:
        emit_json(document)
    elif str(args.csv) != "-":
        _print_metrics(report, rows, document, args)
        if scored is not None:
            print("\nEvaluation files (scored apart from the training iterations):")
            _print_race(scored)
    return EXIT_OK


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
        text = race.trials_csv(scored)
        if str(args.csv) == "-":
            sys.stdout.write(text)
        else:
            try:
                args.csv.write_text(text, encoding="utf-8")
            except OSError as error:
                raise _write_error(error, args.csv) from None
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


# ----------------------------------------------------------------------------- status / stop


def _aws(args: argparse.Namespace) -> Any:
    from rollouts import operate  # noqa: PLC0415

    return operate.Aws(region=args.region, profile=args.profile)


def cmd_status(args: argparse.Namespace) -> int:
    from rollouts import operate  # noqa: PLC0415

    aws = _aws(args)
    interval = args.watch
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
                text = operate.format_status(status)
                if interval and sys.stdout.isatty():
                    sys.stdout.write("\x1b[H\x1b[2J")  # refresh in place
                print(text)
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


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield None


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
    plan_errors = evaluations.evaluation_modules()["plan"].EvaluationError
    try:
        with progress(f"starting an evaluation of {args.experiment}"):
            started = evaluations.start_evaluation(_aws(args), args.experiment, args.run, settings)
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


def cmd_export_model(args: argparse.Namespace) -> int:
    from rollouts import export_model as x  # noqa: PLC0415
    from rollouts import operate  # noqa: PLC0415

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
            read, list_model, where = operate.s3_run_reader(_aws(args), args.source, args.run)
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


def cmd_stop(args: argparse.Namespace) -> int:
    from rollouts import operate  # noqa: PLC0415

    aws = _aws(args)
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


# ----------------------------------------------------------------------------- import-drfc


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


# ----------------------------------------------------------------------------- parser


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


# Values of the flags below end up in AWS calls or, for `render`, inside single-quoted YAML
# scalars (see _checked_fill); each is checked against the AWS naming rules here, so a bad one is
# a usage error (exit 2) naming the flag, the value and what is allowed.

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


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=PROG,
        description="Operate DeepRacer Rollouts experiments: check and preview experiment files "
        "offline, watch and stop deployed runs, plot their metrics.",
        epilog="Exit codes: 0 ok, 1 failure, 2 bad usage or input. "
        "See docs/cli.md for examples and the --json formats.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "validate",
        help="check experiment files offline",
        description="Check experiment files offline. Every problem is listed "
        "with file, field, value and what is allowed; exit 2 if any.",
        formatter_class=fmt,
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="experiment YAML file(s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "plan",
        help="show what a deploy would run (offline)",
        description="Show what `cdk deploy` of this experiment would run: "
        "trainer, each worker's track and race settings, compute, "
        "video streams, S3 layout, episodes per worker per "
        "iteration, and warnings about wasteful settings. No AWS "
        "calls.",
        epilog="examples:\n"
        "  rollouts plan experiments/default.yaml -c backend=robomaker\n"
        "  rollouts plan experiments/default.yaml --requests /tmp/requests --region eu-west-1",
        formatter_class=fmt,
    )
    p.add_argument("file", type=Path, metavar="FILE", help="experiment YAML file")
    p.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a platform setting of cdk.json's context (repeatable)",
    )
    p.add_argument(
        "--cdk-json",
        type=_existing_file,
        metavar="PATH",
        help="cdk.json to read platform defaults from (default: nearest one)",
    )
    group = p.add_argument_group(
        "requests",
        "write the API requests a deploy sends, with deploy-time values as <placeholders>",
    )
    group.add_argument(
        "--requests",
        type=Path,
        metavar="DIR",
        help="write CreateTrainingJob.json and SubmitJob.json (StartSimulationJobBatch-<i>.json "
        "with -c backend=robomaker) and files.json into DIR",
    )
    group.add_argument("--bucket", type=_bucket, help="the platform data bucket")
    group.add_argument("--region", type=_region, help="AWS region code, e.g. us-east-1")
    group.add_argument("--account", type=_account, help="AWS account id (12 digits)")
    group.add_argument("--run-id", type=_run_id, metavar="RUN_ID", help="the run id to show")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)

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
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    _aws_options(p)
    p.set_defaults(func=cmd_export_model)

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
