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


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, tuple[list, list]]]:
    """What the figure really holds when it is saved: per panel (found by its grid position:
    row 0 reward, row 1 progress; column 0 training, column 1 evaluation), every line drawn
    with its label and data, read from matplotlib's own objects."""
    from matplotlib.figure import Figure

    panels: dict[str, dict[str, tuple[list, list]]] = {}
    original = Figure.savefig

    def spy(self: Figure, *args: object, **kwargs: object) -> object:
        for ax in self.axes:
            spec = ax.get_subplotspec()
            assert spec is not None
            phase = ("training", "evaluation")[spec.colspan.start]
            metric = ("mean_reward", "mean_progress")[spec.rowspan.start]
            lines = {
                str(line.get_label()): (
                    [float(x) for x in line.get_xdata()],
                    [float(y) for y in line.get_ydata()],
                )
                for line in ax.get_lines()
            }
            legend = ax.get_legend()
            shown = [t.get_text() for t in legend.get_texts()] if legend else []
            assert shown == list(lines), "every line drawn has its legend entry"
            panels[f"{phase}/{metric}"] = lines
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return panels


def trailing_mean(values: list[float], window: int) -> list[float]:
    return [
        sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]


def test_plot_is_png_with_expected_series(run, tmp_path, drawn):
    out = tmp_path / "curves.png"
    doc = run("metrics", TRAINING, "--episodes-per-iteration", E, "--plot", out, "--json").json()
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 800 and height > 500
    # The series in the figure itself, checked against means computed here from the raw rows.
    expected = independent_means(TRAINING, E)
    rows = json.loads(TRAINING.read_text())["metrics"]
    training_episodes = len({r["episode"] for r in rows if r["phase"] == "training"})
    partial_iteration = training_episodes // E + 1
    assert set(drawn) == {
        "training/mean_reward",
        "training/mean_progress",
        "evaluation/mean_reward",
        "evaluation/mean_progress",
    }
    for panel, lines in drawn.items():
        phase, metric = panel.split("/")
        iterations = sorted(i for p, i in expected if p == phase)
        means = [expected[(phase, i)][metric] for i in iterations]
        labels = ["worker 0", "overall", "overall, rolling mean (5)"]
        if phase == "training":
            labels.append(f"partial: {training_episodes % E}/{E} episodes")
        assert list(lines) == labels, panel  # 1 worker + overall + rolling mean (+ partial)
        for label in ("worker 0", "overall"):  # one worker: its means are the overall ones
            xs, ys = lines[label]
            assert xs == iterations
            assert ys == pytest.approx(means, abs=1e-9), (panel, label)
        xs, ys = lines["overall, rolling mean (5)"]
        assert xs == iterations and ys == pytest.approx(trailing_mean(means, 5), abs=1e-9)
        if phase == "training":
            xs, ys = lines[labels[-1]]
            assert xs == [partial_iteration] and ys == pytest.approx([means[-1]])
    # --json lists the same series, in the order drawn (the partial marker is not a series)
    for panel, labels in doc["plot"]["panels"].items():
        assert list(drawn[panel])[: len(labels)] == labels, panel
    # The console run stopped 8 training episodes into its last iteration (computed here:
    # training episodes modulo E), which the plot circles instead of showing it as a collapse.
    assert doc["plot"]["partial_iteration"] == {
        "iteration": partial_iteration,
        "episodes": training_episodes % int(E),
    }


@pytest.mark.parametrize("name", ["x.jpg", "x.PDF", "x", "x.png.svg"])
def test_plot_needs_a_png_name(run, tmp_path, name):
    result = run("metrics", TRAINING, "--episodes-per-iteration", E, "--plot", tmp_path / name)
    assert result.code == 2
    assert "argument --plot" in result.err and "ending in .png" in result.err
    assert not (tmp_path / name).exists()


def test_plot_upper_case_png_suffix_is_fine(run, tmp_path):
    out = tmp_path / "Curves.PNG"
    assert run("metrics", TRAINING, "--episodes-per-iteration", E, "--plot", out).code == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


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


def test_two_workers_plot_csv_and_per_worker_rows(run, tmp_path, drawn):
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
    for metric in ("mean_reward", "mean_progress"):
        lines = drawn[f"training/{metric}"]
        assert list(lines) == ["worker 0", "worker 1", "overall", "overall, rolling mean (2)"]
        # Expected curves computed here from the files, not taken from the tool's own JSON.
        field = {"mean_reward": "reward_score", "mean_progress": "completion_percentage"}[metric]
        per_worker = {}
        for worker, name in ((0, "TrainingMetrics.json"), (1, "TrainingMetrics_1.json")):
            episodes = json.loads((folder / "metrics" / name).read_text())["metrics"]
            per_worker[worker] = [
                [e[field] for e in episodes if (e["episode"] - 1) // 10 == i] for i in range(4)
            ]
            xs, ys = lines[f"worker {worker}"]
            want = [sum(v) / len(v) for v in per_worker[worker]]
            assert xs == [1, 2, 3, 4] and ys == pytest.approx(want, abs=1e-6)
        both = [per_worker[0][i] + per_worker[1][i] for i in range(4)]
        assert lines["overall"][1] == pytest.approx([sum(v) / len(v) for v in both], abs=1e-6)
        assert drawn[f"evaluation/{metric}"] == {}  # nothing drawn, only the notice
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
        # Plain text is not "truncated": it is not JSON at all
        ("episode,reward\n1,3.2\n", "not JSON: it begins 'episode,reward"),
        # A negative lap time would rank best
        (
            '{"metrics": [{"trial": 1, "phase": "evaluation", "completion_percentage": 100, '
            '"episode_status": "Lap complete", "elapsed_time_in_milliseconds": -5000}]}',
            "elapsed_time_in_milliseconds = -5000 is negative",
        ),
        (
            '{"metrics": [{"trial": 1, "phase": "evaluation", "completion_percentage": -3, '
            '"episode_status": "Off track"}]}',
            "completion_percentage = -3 is negative",
        ),
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


def test_workers_below_the_files_found_warns_and_ignores_the_rest(run, tmp_path):
    folder = two_workers(tmp_path)
    only0 = run(
        "metrics",
        folder / "metrics" / "TrainingMetrics.json",
        "--json",
        "--workers",
        "1",
        "--episodes-per-iteration",
        E,
    )
    result = run("metrics", folder, "--workers", "1", "--episodes-per-iteration", E, "--json")
    assert result.code == 0
    ignored = str(folder / "metrics" / "TrainingMetrics_1.json")
    assert f"warning: ignoring {ignored} (worker 1)" in result.err
    assert "the run has 1 worker(s) (--workers)" in result.err
    doc = result.json()
    assert doc["ignored_workers"] == [{"worker": 1, "source": ignored, "episodes": 40}]
    assert [w["worker"] for w in doc["workers"]] == [0] and doc["worker_count"] == 1
    assert doc["rows"] == only0.json()["rows"]  # worker 1's rows are in no row
    assert "warning" not in only0.err
    text = run("metrics", folder, "--workers", "1", "--episodes-per-iteration", E)
    assert text.code == 0 and "warning: ignoring" in text.err and "warning" not in text.out
    both = run("metrics", folder, "--workers", "2", "--episodes-per-iteration", E, "--json")
    assert both.err == "" and both.json()["ignored_workers"] == []


def test_only_files_beyond_the_workers_is_exit_2(run, tmp_path):
    folder = two_workers(tmp_path)
    (folder / "metrics" / "TrainingMetrics.json").unlink()
    result = run(
        "metrics",
        folder / "metrics" / "TrainingMetrics_1.json",
        "--workers",
        "1",
        "--episodes-per-iteration",
        E,
    )
    assert result.code == 2 and "no metrics of workers 0..0" in result.err


def test_encodings_of_metrics_and_hyperparameters(run, tmp_path):
    text = TRAINING.read_text(encoding="utf-8")
    bom = tmp_path / "bom" / "TrainingMetrics.json"
    bom.parent.mkdir()
    bom.write_bytes(text.encode("utf-8-sig"))
    assert run("metrics", bom, "--episodes-per-iteration", E, "--json").json()["iterations"] == 29
    latin = tmp_path / "latin" / "TrainingMetrics.json"
    latin.parent.mkdir()
    latin.write_bytes(
        text.replace('"Lap complete"', '"Lap compl\u00e9t\u00e9"', 1).encode("latin-1")
    )
    result = run("metrics", latin, "--episodes-per-iteration", E)
    assert result.code == 2 and str(latin) in result.err and "not UTF-8 text" in result.err
    folder = tmp_path / "hyper"
    (folder / "metrics").mkdir(parents=True)
    (folder / "metrics" / "TrainingMetrics.json").write_bytes(TRAINING.read_bytes())
    (folder / "hyperparameters.json").write_bytes(
        b'{"num_episodes_between_training": 20, "x": "\xff"}'
    )
    result = run("metrics", folder)
    assert result.code == 2 and "hyperparameters.json: not UTF-8 text" in result.err


def test_unwritable_csv_and_plot_are_exit_1(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for flag, name in (("--csv", "rows.csv"), ("--plot", "curves.png")):
        result = run("metrics", TRAINING, "--episodes-per-iteration", E, flag, blocker / name)
        assert result.code == 1, flag
        assert result.err.startswith("rollouts metrics: error: cannot write")
        assert len(result.err.strip().splitlines()) == 1


@mock_aws
def test_non_utf8_hyperparameters_in_s3_are_skipped(run):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="p/metrics/TrainingMetrics.json", Body=TRAINING.read_bytes())
    s3.put_object(Bucket="data", Key="p/hyperparameters.json", Body=b"\xff\xfe\xfd")
    result = run("metrics", "s3://data/p")
    assert result.code == 2 and "--episodes-per-iteration" in result.err
    assert "Traceback" not in result.err


def test_hyperparameters_of_a_downloaded_prefix_under_ip(run, tmp_path):
    """A downloaded experiment prefix (or DRfC model folder): metrics/ and ip/ side by side."""
    (tmp_path / "metrics").mkdir()
    (tmp_path / "ip").mkdir()
    (tmp_path / "metrics" / "TrainingMetrics.json").write_bytes(TRAINING.read_bytes())
    (tmp_path / "ip" / "hyperparameters.json").write_text('{"num_episodes_between_training": "20"}')
    doc = run("metrics", tmp_path, "--json").json()
    assert doc["episodes_per_iteration"] == 20 and doc["iterations"] == 29
    assert doc["episodes_per_iteration_from"] == str(tmp_path / "ip" / "hyperparameters.json")
