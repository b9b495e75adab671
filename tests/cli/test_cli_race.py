"""metrics on evaluation files: race scoring without extra flags, computed here independently
from the rows; evaluation and training files given together are kept apart."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from cli_support import FIXTURES

TRAINING = FIXTURES / "metrics" / "console-training-metrics.json"
EVALUATION = FIXTURES / "metrics" / "console-evaluation-metrics.json"


def row(trial: int, status: str, ms: int, progress: float = 100.0, **counts: int) -> dict:
    """An EvalMetrics row as the simapp writes it (bundle/markov/metrics/s3_metrics.py)."""
    names = ("off_track_count", "crash_count", "reversed_count", "immobilized_count")
    values = {name: counts.get(name.removesuffix("_count"), 0) for name in names}
    return {
        "completion_percentage": progress,
        "metric_time": 1000 + ms,
        "start_time": 1000,
        "elapsed_time_in_milliseconds": ms,
        "episode_status": status,
        **values,
        "reset_count": sum(values.values()),
        "trial": trial,
    }


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": rows}))
    return path


def test_the_console_evaluation_needs_no_flags(run):
    doc = run("metrics", EVALUATION, "--json").json()
    rows = json.loads(EVALUATION.read_text())["metrics"]
    laps = [r["elapsed_time_in_milliseconds"] / 1000 for r in rows]
    race = doc["race"]
    assert [t["lap_seconds"] for t in race["trials"]] == laps
    assert [t["status"] for t in race["trials"]] == ["Lap complete"] * 3
    [track] = race["tracks"]
    assert track["trials"] == 3 and track["completed"] == 3
    assert track["best_lap_seconds"] == min(laps) == 16.267
    assert track["best_consecutive_seconds"] == round(sum(laps) / 3, 3)
    assert track["total_seconds"] == round(sum(laps), 3)
    assert track["penalty_seconds"] == 0
    assert "rows" not in doc, "no training iterations are made up from evaluation trials"
    text = run("metrics", EVALUATION)
    assert text.code == 0 and "16.267" in text.out and "best 3 consecutive" in text.out


def test_penalties_consecutive_laps_and_rankings(run, tmp_path: Path):
    spain = write(
        tmp_path / "eval" / "Spain_track-clockwise" / "metrics.json",
        [
            row(1, "Lap complete", 14000, off_track=1),
            row(1, "Off track", 6000, progress=40.0, off_track=3),
            row(2, "Lap complete", 12500),
            row(3, "Lap complete", 12700, crash=1),
            row(4, "Lap complete", 13000),
        ],
    )
    oval = write(
        tmp_path / "eval" / "Oval_track-counterclockwise" / "metrics.json",
        [row(1, "Lap complete", 9000), row(2, "Lap complete", 9500)],
    )
    doc = run(
        "metrics", spain, oval, "--consecutive", "2", "--off-track-penalty", "3", "--json"
    ).json()
    race = doc["race"]
    by_track = {t["track"]: t for t in race["tracks"]}
    spain_score = by_track["Spain_track-clockwise"]
    assert spain_score["trials"] == 5 and spain_score["completed"] == 4
    assert spain_score["best_lap_seconds"] == 12.5
    # Windows of 2 consecutive complete trials: (12.5, 12.7) is best; the off-track trial
    # breaks (14.0, 12.5).
    assert spain_score["best_consecutive_seconds"] == 12.6
    assert spain_score["total_seconds"] is None, "a trial that did not finish: no total time"
    # 4 off-track x 3 s + 1 crash x 5 s (the simapp's default collision penalty), already
    # inside the lap times.
    assert spain_score["penalty_seconds"] == 4 * 3 + 5
    assert spain_score["off_track"] == 4 and spain_score["crashes"] == 1
    oval_score = by_track["Oval_track-counterclockwise"]
    assert oval_score["total_seconds"] == 18.5
    assert race["rankings"] == {
        "best_lap": ["Oval_track-counterclockwise", "Spain_track-clockwise"],
        "best_2_consecutive": ["Oval_track-counterclockwise", "Spain_track-clockwise"],
        "total_time": ["Oval_track-counterclockwise"],
    }
    assert race["penalties"]["included_in_lap_time"] is True


def test_csv_has_every_trial(run, tmp_path: Path):
    out = tmp_path / "trials.csv"
    assert run("metrics", EVALUATION, "--csv", out).code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    source = json.loads(EVALUATION.read_text())["metrics"]
    assert len(rows) == len(source) == 3
    assert [float(r["lap_seconds"]) * 1000 for r in rows] == [
        r["elapsed_time_in_milliseconds"] for r in source
    ]
    assert {"off_track", "crashes", "resets", "penalty_seconds", "status"} <= set(rows[0])


def test_plot_draws_lap_time_per_trial_per_track(run, tmp_path: Path):
    other = write(tmp_path / "b" / "metrics.json", [row(1, "Off track", 3000, progress=20.0)])
    out = tmp_path / "laps.png"
    doc = run("metrics", EVALUATION, other, "--plot", out, "--json").json()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["plot"]["tracks"] == {
        "b": {"laps": 0, "not_completed": 1},
        "console-evaluation-metrics": {"laps": 3, "not_completed": 0},
    }


def test_training_and_evaluation_files_together_stay_apart(run):
    alone = run("metrics", TRAINING, "--episodes-per-iteration", 20, "--json").json()
    both = run("metrics", TRAINING, EVALUATION, "--episodes-per-iteration", 20, "--json").json()
    assert both["rows"] == alone["rows"]
    assert both["worker_count"] == alone["worker_count"] == 1
    assert [w["source"] for w in both["workers"]] == [str(TRAINING)]
    assert len(both["race"]["trials"]) == 3
    text = run("metrics", TRAINING, EVALUATION, "--episodes-per-iteration", 20)
    assert "Evaluation files (scored apart from the training iterations)" in text.out


def test_an_evaluation_folder_is_read_leg_by_leg(run, tmp_path: Path):
    """What `rollouts evaluate` leaves under <run>/evaluations/<id>/: one folder per leg."""
    folder = tmp_path / "eval-1234abcd"
    write(folder / "Spain_track" / "metrics.json", [row(1, "Lap complete", 12000)])
    write(folder / "Spain_track-reverse" / "metrics.json", [row(1, "Lap complete", 12500)])
    (folder / "model").mkdir()
    doc = run("metrics", folder, "--json").json()
    assert [t["track"] for t in doc["race"]["tracks"]] == ["Spain_track", "Spain_track-reverse"]
    assert doc["race"]["rankings"]["best_lap"] == ["Spain_track", "Spain_track-reverse"]
    empty = run("metrics", tmp_path / "nothing-here")
    assert empty.code == 2


def test_an_evaluation_prefix_in_s3_is_read_leg_by_leg(run):
    import boto3
    from moto import mock_aws

    prefix = "experiments/x/runs/x-0a1b2c3d/evaluations/eval-1234abcd"
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data-bucket")
        for leg, ms in (("Spain_track", 12000), ("Spain_track-reverse", 12500)):
            body = json.dumps({"metrics": [row(1, "Lap complete", ms)]})
            s3.put_object(Bucket="data-bucket", Key=f"{prefix}/{leg}/metrics.json", Body=body)
        # Not legs: the checkpoint copy, a leg's video and its params.
        s3.put_object(Bucket="data-bucket", Key=f"{prefix}/model/model_metadata.json", Body=b"{}")
        s3.put_object(
            Bucket="data-bucket", Key=f"{prefix}/Spain_track/mp4/metrics.json", Body=b"{}"
        )
        doc = run("metrics", f"s3://data-bucket/{prefix}", "--json").json()
    assert [t["track"] for t in doc["race"]["tracks"]] == ["Spain_track", "Spain_track-reverse"]
    assert [t["best_lap_seconds"] for t in doc["race"]["tracks"]] == [12.0, 12.5]
