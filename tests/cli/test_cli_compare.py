"""compare: two or more runs (local copies of run prefixes, or the deployed variants of a sweep)
side by side, labelled by what differs; figures checked against the report of each run alone."""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import FIXTURES

TRAINING = FIXTURES / "metrics" / "console-training-metrics.json"
EVALUATION = FIXTURES / "metrics" / "console-evaluation-metrics.json"


def run_copy(root: Path, lr: float, scale: float, evaluated: bool = False) -> Path:
    """A run's prefix as S3 holds it: metrics, hyperparameters, worker 0's params, reward."""
    document = json.loads(TRAINING.read_text())
    for row in document["metrics"]:
        row["reward_score"] = row["reward_score"] * scale
    (root / "metrics").mkdir(parents=True)
    (root / "metrics" / "TrainingMetrics.json").write_text(json.dumps(document))
    (root / "hyperparameters.json").write_text(
        json.dumps({"num_episodes_between_training": 20, "lr": lr, "batch_size": 64})
    )
    (root / "training_params.yaml").write_text(
        "WORLD_NAME: reInvent2019_track\nRACE_TYPE: TIME_TRIAL\n"
    )
    (root / "reward_function.py").write_text("def reward_function(params):\n    return 1.0\n")
    if evaluated:
        leg = root / "evaluations" / "eval-0000abcd" / "Spain_track"
        leg.mkdir(parents=True)
        (leg / "metrics.json").write_bytes(EVALUATION.read_bytes())
    return root


def test_runs_are_labelled_by_what_differs(run, tmp_path: Path):
    a = run_copy(tmp_path / "run-a", 0.0003, 1.0, evaluated=True)
    b = run_copy(tmp_path / "run-b", 0.0001, 2.0)
    out = tmp_path / "compare.png"
    doc = run("compare", a, b, "--plot", out, "--json").json()
    assert [r["label"] for r in doc["runs"]] == ["lr=0.0003", "lr=0.0001"]
    alone = run("metrics", a, "--json").json()
    overall = [r for r in alone["rows"] if r["worker"] == "overall"]
    training = [r for r in overall if r["phase"] == "training"]
    evaluation = [r for r in overall if r["phase"] == "evaluation"]
    first = doc["runs"][0]
    assert first["last"]["iteration"] == training[-1]["iteration"]
    assert first["last"]["mean_reward"] == training[-1]["mean_reward"]
    best = max(evaluation, key=lambda r: (r["mean_progress"], -r["iteration"]))
    assert first["best"] == {
        "iteration": best["iteration"],
        "value": best["mean_progress"],
        "by": "evaluation progress %",
    }
    assert first["evaluation"] == {
        "Spain_track": {"best_lap_seconds": 16.267, "completed": 3, "trials": 3}
    }
    assert doc["runs"][1]["evaluation"] == {}
    # Twice the rewards: the second run's last mean reward is twice the first's.
    assert doc["runs"][1]["last"]["mean_reward"] == round(2 * first["last"]["mean_reward"], 4)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["plot"]["panels"] == {
        "mean_reward": ["lr=0.0003", "lr=0.0001"],
        "mean_progress": ["lr=0.0003", "lr=0.0001"],
    }
    text = run("compare", a, b)
    assert text.code == 0 and "lr=0.0003" in text.out and "Spain_track 16.267" in text.out


def test_alike_runs_keep_their_names_and_one_run_is_not_a_comparison(run, tmp_path: Path):
    a = run_copy(tmp_path / "a", 0.0003, 1.0)
    b = run_copy(tmp_path / "b", 0.0003, 1.0)
    doc = run("compare", a, b, "--json").json()
    assert [r["label"] for r in doc["runs"]] == [str(a), str(b)]
    one = run("compare", a)
    assert one.code == 2 and "at least two runs" in one.err
    bad = run("compare", a, tmp_path / "nope.txt")
    assert bad.code == 2 and "not a folder" in bad.err


def test_a_sweeps_deployed_variants_by_its_base_name(run, world, tmp_path: Path):
    world.stubs["cloudformation"].add_response(
        "list_stacks",
        {
            "StackSummaries": [
                {"StackName": name, "CreationTime": "2026-11-24T12:00:00Z", "StackStatus": status}
                for name, status in (
                    ("DeepRacerRollouts-lr-sweep-206d47", "CREATE_COMPLETE"),
                    ("DeepRacerRollouts-lr-sweep-d1fbe5", "UPDATE_COMPLETE"),
                    ("DeepRacerRollouts-lr-sweep-0a0a0a", "DELETE_COMPLETE"),
                    ("DeepRacerRollouts-lr-sweeper", "CREATE_COMPLETE"),
                )
            ]
        },
        {},
    )
    from rollouts.cli import compare

    assert compare._sweep_variants(world.aws, "lr-sweep") == ["lr-sweep-206d47", "lr-sweep-d1fbe5"]
    world.done()
