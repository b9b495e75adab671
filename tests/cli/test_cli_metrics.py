"""metrics: the real console metrics fixture, malformed files, plot, exports, S3 (moto)."""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path

import boto3
import pytest
from cli_support import FIXTURES
from moto import mock_aws

from rollouts import metrics as m

TRAINING = FIXTURES / "metrics" / "console-training-metrics.json"
EVALUATION = FIXTURES / "metrics" / "console-evaluation-metrics.json"
E = 20  # the console run's num_episodes_between_training


def independent_means(path: Path, episodes_per_iteration: int) -> dict[tuple[str, int], dict]:
    """Per-iteration aggregates computed here from the raw rows, without rollouts.metrics."""
    rows = json.loads(path.read_text())["metrics"]
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        iteration = -(-row["episode"] // episodes_per_iteration)  # ceil
        groups.setdefault((row["phase"], iteration), []).append(row)
    result = {}
    for key, items in groups.items():
        laps = [
            r["elapsed_time_in_milliseconds"]
            for r in items
            if r["episode_status"] == "Lap complete"
        ]
        result[key] = {
            "episodes": len(items),
            "mean_reward": sum(r["reward_score"] for r in items) / len(items),
            "best_reward": max(r["reward_score"] for r in items),
            "mean_progress": sum(r["completion_percentage"] for r in items) / len(items),
            "completion_rate": len(laps) / len(items),
            "best_lap_seconds": min(laps) / 1000 if laps else None,
        }
    return result


def test_console_fixture_iterations_and_means(run):
    raw = json.loads(TRAINING.read_text())["metrics"]
    last_episode = max(r["episode"] for r in raw if r["phase"] == "training")
    expected_iterations = -(-last_episode // E)
    expected = independent_means(TRAINING, E)
    doc = run("metrics", TRAINING, "--episodes-per-iteration", E, "--json").json()
    assert doc["iterations"] == expected_iterations == 29
    overall = {(r["phase"], r["iteration"]): r for r in doc["rows"] if r["worker"] == "overall"}
    assert set(overall) == set(expected)
    for key, want in expected.items():
        got = overall[key]
        assert got["episodes"] == want["episodes"], key
        for field in ("mean_reward", "best_reward", "mean_progress", "completion_rate"):
            assert got[field] == pytest.approx(want[field], abs=1e-3), (key, field)
        assert got["best_lap_seconds"] == pytest.approx(want["best_lap_seconds"], abs=1e-3)
    # full iterations have E training episodes; evaluation rows land in the iteration they follow
    assert overall[("training", 1)]["episodes"] == E
    assert overall[("training", 29)]["episodes"] == last_episode - 28 * E
    assert overall[("evaluation", 1)]["episodes"] == 5
    worker0 = [r for r in doc["rows"] if r["worker"] == 0]
    assert len(worker0) == len(overall)  # one worker: its rows equal the overall ones
    assert doc["workers"][0]["episodes_per_iteration"] == E


def test_text_table_and_hyperparameters_next_to_metrics(run, tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "TrainingMetrics.json").write_bytes(TRAINING.read_bytes())
    (tmp_path / "hyperparameters.json").write_bytes(
        (FIXTURES / "drfc" / "hyperparameters.json").read_bytes()
    )  # E = 20
    result = run("metrics", tmp_path, "--last", "2")
    assert result.code == 0, result.err
    assert "29 iteration(s) of 20 episodes" in result.out
    assert "hyperparameters.json" in result.out
    lines = [line for line in result.out.splitlines() if line.strip().startswith(("28 ", "29 "))]
    assert len(lines) == 3  # training 28, 29 and evaluation 28


def test_episodes_per_iteration_from_experiment_file(run, repo):
    doc = run(
        "metrics",
        TRAINING,
        "--experiment-file",
        repo / "experiments" / "multi-track-oa.yaml",
        "--json",
    ).json()
    assert doc["episodes_per_iteration"] == 12
    assert doc["iterations"] == -(-568 // 12)


def test_unknown_episodes_per_iteration_is_exit_2(run):
    result = run("metrics", TRAINING)
    assert result.code == 2 and "--episodes-per-iteration" in result.err


def test_evaluation_fixture_without_episode_or_phase(run):
    doc = run("metrics", EVALUATION, "--episodes-per-iteration", E, "--json").json()
    assert doc["rows"] == [] and doc["iterations"] == 0
    trials = doc["evaluation_trials"]
    rows = json.loads(EVALUATION.read_text())["metrics"]
    assert trials["trials"] == len(rows) == 3
    assert trials["completion_rate"] == 1.0
    assert trials["best_lap_seconds"] == min(r["elapsed_time_in_milliseconds"] for r in rows) / 1000
    text = run("metrics", EVALUATION, "--episodes-per-iteration", E)
    assert "3 trials" in text.out


def test_plot_is_png_with_expected_series(run, tmp_path):
    out = tmp_path / "curves.png"
    doc = run("metrics", TRAINING, "--episodes-per-iteration", E, "--plot", out, "--json").json()
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 800 and height > 500
    panels = doc["plot"]["panels"]
    assert set(panels) == {
        "training/mean_reward",
        "training/mean_progress",
        "evaluation/mean_reward",
        "evaluation/mean_progress",
    }
    for series in panels.values():  # 1 worker + overall + rolling mean
        assert series == ["worker 0", "overall", "overall, rolling mean (5)"]
    # The console run stopped 8 training episodes into its last iteration (computed here:
    # training episodes modulo E), which the plot circles instead of showing it as a collapse.
    rows = json.loads(TRAINING.read_text())["metrics"]
    training_episodes = len({r["episode"] for r in rows if r["phase"] == "training"})
    assert doc["plot"]["partial_iteration"] == {
        "iteration": training_episodes // int(E) + 1,
        "episodes": training_episodes % int(E),
    }


def two_workers(tmp_path: Path) -> Path:
    """Split the console run into two workers' files (own episode counters), E = 20."""
    rows = json.loads(TRAINING.read_text())["metrics"]
    training = [r for r in rows if r["phase"] == "training"][:80]  # 4 iterations
    w0, w1 = [], []
    for r in training:
        iteration, k = divmod(r["episode"] - 1, E)
        target, local = (w0, k) if k % 2 == 0 else (w1, k)
        target.append({**r, "episode": iteration * 10 + local // 2 + 1})
    folder = tmp_path / "run"
    (folder / "metrics").mkdir(parents=True)
    (folder / "metrics" / "TrainingMetrics.json").write_text(json.dumps({"metrics": w0}))
    (folder / "metrics" / "TrainingMetrics_1.json").write_text(json.dumps({"metrics": w1}))
    return folder


def test_two_workers_plot_csv_and_per_worker_rows(run, tmp_path):
    folder = two_workers(tmp_path)
    out = tmp_path / "two.png"
    csv_file = tmp_path / "rows.csv"
    doc = run(
        "metrics",
        folder,
        "--episodes-per-iteration",
        E,
        "--plot",
        out,
        "--csv",
        csv_file,
        "--window",
        "2",
        "--json",
    ).json()
    assert doc["iterations"] == 4
    assert [w["episodes_per_iteration"] for w in doc["workers"]] == [10, 10]
    overall = [r for r in doc["rows"] if r["worker"] == "overall"]
    assert [r["episodes"] for r in overall] == [20, 20, 20, 20]
    assert doc["plot"]["panels"]["training/mean_reward"] == [
        "worker 0",
        "worker 1",
        "overall",
        "overall, rolling mean (2)",
    ]
    assert doc["plot"]["panels"]["evaluation/mean_reward"] == []  # no evaluation rows
    rows = list(csv.DictReader(io.StringIO(csv_file.read_text())))
    assert len(rows) == 12 and rows[0].keys() >= {"iteration", "phase", "worker", "mean_reward"}
    text = run("metrics", folder, "--episodes-per-iteration", E, "--per-worker")
    assert text.code == 0 and "per worker and overall" in text.out


def test_csv_to_stdout(run):
    result = run(
        "metrics", TRAINING, "--episodes-per-iteration", E, "--csv", "-", "--phase", "evaluation"
    )
    lines = result.out.splitlines()
    assert lines[0].startswith("iteration,phase,worker")
    assert all(",evaluation," in line for line in lines[1:])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ('{"metrics": [{"reward_score": 1, "episode": 1, "pha', "truncated"),
        ("[1, 2]", 'expected a JSON object with a "metrics" list'),
        ('{"version": 2}', 'expected a JSON object with a "metrics" list'),
        ('{"metrics": {"a": 1}}', "must be a list"),
        (
            '{"metrics": [{"episode": 1, "phase": "training", "completion_percentage": 5, '
            '"episode_status": "Off track"}]}',
            "metrics[0]: missing key 'reward_score'",
        ),
        (
            '{"metrics": [{"episode": 1, "phase": "training", "reward_score": 3, '
            '"episode_status": "Off track"}]}',
            "missing key 'completion_percentage'",
        ),
        (
            '{"metrics": [{"episode": 1, "phase": "training", "reward_score": "x", '
            '"completion_percentage": 5, "episode_status": "Off track"}]}',
            "is not a number",
        ),
        (
            '{"metrics": [{"episode": 1, "phase": "warmup", "reward_score": 1, '
            '"completion_percentage": 5, "episode_status": "Off track"}]}',
            "phase = 'warmup'",
        ),
        (
            '{"metrics": [{"episode": 1, "phase": "training", "reward_score": 1, '
            '"completion_percentage": 100, "episode_status": "Lap complete"}]}',
            "missing key 'elapsed_time_in_milliseconds'",
        ),
    ],
)
def test_malformed_metrics_give_clear_errors(run, tmp_path, content, message):
    bad = tmp_path / "TrainingMetrics.json"
    bad.write_text(content)
    result = run("metrics", bad, "--episodes-per-iteration", E)
    assert result.code == 2
    assert message in result.err and str(bad) in result.err
    assert "Traceback" not in result.err


def test_missing_path_and_duplicate_workers(run, tmp_path):
    assert run("metrics", tmp_path / "nope.json", "--episodes-per-iteration", E).code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("metrics", empty, "--episodes-per-iteration", E)
    assert result.code == 2 and "no metrics files" in result.err
    (tmp_path / "TrainingMetrics.json").write_bytes(TRAINING.read_bytes())
    (empty / "training_metrics.json").write_bytes(TRAINING.read_bytes())
    dup = run("metrics", tmp_path / "TrainingMetrics.json", empty, "--episodes-per-iteration", E)
    assert dup.code == 2 and "both metrics of worker 0" in dup.err


def test_worker_index_names():
    assert m.worker_index("TrainingMetrics.json") == 0
    assert m.worker_index("TrainingMetrics_3.json") == 3
    assert m.worker_index("training_metrics.json") == 0  # the workshop's name
    assert m.worker_index("console-training-metrics.json") is None
    assert [m.episodes_for_worker(20, 3, k) for k in range(3)] == [7, 7, 6]
    assert m.episodes_for_worker(2, 3, 2) == 0
    assert m.rolling_mean([1.0, None, 3.0, 5.0], 2) == [1.0, 1.0, 3.0, 4.0]


@mock_aws
def test_metrics_from_s3_prefix(run):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="data")
    prefix = "experiments/reinvent"
    s3.put_object(
        Bucket="data", Key=f"{prefix}/metrics/TrainingMetrics.json", Body=TRAINING.read_bytes()
    )
    s3.put_object(
        Bucket="data",
        Key=f"{prefix}/hyperparameters.json",
        Body=json.dumps({"num_episodes_between_training": "20"}),
    )
    doc = run("metrics", f"s3://data/{prefix}", "--json").json()
    assert doc["iterations"] == 29 and doc["episodes_per_iteration"] == 20
    assert doc["workers"][0]["source"] == f"s3://data/{prefix}/metrics/TrainingMetrics.json"
    empty = run("metrics", "s3://data/experiments/other", "--episodes-per-iteration", E)
    assert empty.code == 2 and "no metrics files yet" in empty.err
