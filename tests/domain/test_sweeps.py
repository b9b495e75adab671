"""Sweeps: the product (or zip) of the listed values, one validated experiment per variant, named
from the base name and a hash of its values; bad variants name themselves and their field."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rollouts.spec import SpecError, load_experiment, load_variants
from rollouts.sweep import MAX_VARIANTS, variant_name

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "experiments" / "models" / "discrete-5-actions.json"
DRFC_HYPER = (
    Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "drfc" / "hyperparameters.json"
)


def write(tmp_path: Path, body: str, name: str = "sweep.yaml") -> Path:
    for reward in ("a.py", "b.py"):
        (tmp_path / reward).write_text("def reward_function(params):\n    return 1.0\n")
    path = tmp_path / name
    path.write_text(
        f"name: lr-sweep\ntrack: reInvent2019_track\nreward_function: a.py\n"
        f"model_metadata: {MODEL}\n" + textwrap.dedent(body)
    )
    return path


def test_the_product_of_the_lists(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        hyperparameters: {lr: 0.0003, num_episodes_between_training: 20}
        sweep:
          hyperparameters.lr: [0.0003, 0.0001]
          track: [reInvent2019_track, Spain_track]
          reward_function: [a.py, b.py]
        """,
    )
    specs = load_variants(path)
    assert len(specs) == 8
    combos = {(s.hyperparameters["lr"], s.track, s.reward_function_path.name) for s in specs}
    assert len(combos) == 8
    for spec in specs:
        assert spec.sweep_base == "lr-sweep"
        assert spec.name == variant_name("lr-sweep", dict(spec.variant))
        assert spec.variant["hyperparameters.lr"] == spec.hyperparameters["lr"]
        assert spec.hyperparameters["num_episodes_between_training"] == 20  # the rest is kept
    assert len({s.name for s in specs}) == 8


def test_names_do_not_depend_on_the_order_of_the_lists(tmp_path: Path) -> None:
    one = load_variants(write(tmp_path, "sweep:\n  track: [reInvent2019_track, Spain_track]\n"))
    other = load_variants(write(tmp_path, "sweep:\n  track: [Spain_track, reInvent2019_track]\n"))
    assert {s.name: s.track for s in one} == {s.name: s.track for s in other}


def test_a_path_into_a_hyperparameters_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"hyperparameters: {DRFC_HYPER}\nsweep:\n  hyperparameters.lr: [0.0003, 0.0001]\n",
    )
    from_file = json.loads(DRFC_HYPER.read_text())
    specs = load_variants(path)
    assert sorted(s.hyperparameters["lr"] for s in specs) == [0.0001, 0.0003]
    for spec in specs:  # every other value still comes from the file
        assert spec.hyperparameters["batch_size"] == from_file["batch_size"]


def test_zip_pairs_the_lists(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sweep_mode: zip
        sweep:
          track: [reInvent2019_track, Spain_track]
          reward_function: [a.py, b.py]
        """,
    )
    assert sorted((s.track, s.reward_function_path.name) for s in load_variants(path)) == [
        ("Spain_track", "b.py"),
        ("reInvent2019_track", "a.py"),
    ]
    bad = write(
        tmp_path,
        "sweep_mode: zip\nsweep:\n  track: [Spain_track]\n  reward_function: [a.py, b.py]\n",
    )
    with pytest.raises(SpecError, match="every list must have the same length"):
        load_variants(bad)


def test_a_bad_value_names_the_variant_and_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "sweep:\n  hyperparameters.lr: [0.0003, 0.5]\n")
    with pytest.raises(SpecError) as caught:
        load_variants(path)
    [problem] = caught.value.problems
    assert problem.field == "hyperparameters.lr" and problem.value == 0.5
    assert "(sweep variant lr-sweep-" in problem.file
    assert "hyperparameters.lr=0.5" in problem.file


def test_limits_and_malformed_sweeps(tmp_path: Path) -> None:
    many = write(
        tmp_path,
        "sweep:\n  trainer.max_run_minutes: [" + ", ".join(str(10 + i) for i in range(51)) + "]\n",
    )
    with pytest.raises(SpecError) as caught:
        load_variants(many)
    assert f"at most {MAX_VARIANTS}, because each variant is a stack with its own Batch" in str(
        caught.value
    )
    for body, message in (
        ("sweep: {track: Spain_track}\n", "a non-empty list of values"),
        ("sweep: {name: [a, b]}\n", "a field path other than name"),
        ("sweep: {track: [Spain_track, Spain_track]}\n", "a value twice"),
        ("sweep_mode: zip\n", "is not allowed without sweep:"),
        ("sweep: {track: [Spain_track]}\nsweep_mode: cross\n", "one of product, zip"),
    ):
        with pytest.raises(SpecError, match=message):
            load_variants(write(tmp_path, body))
    long_name = write(tmp_path, "sweep: {track: [Spain_track]}\n")
    long_name.write_text(long_name.read_text().replace("name: lr-sweep", "name: " + "a" * 34))
    with pytest.raises(SpecError, match="at most 33 characters"):
        load_variants(long_name)
    with pytest.raises(SpecError, match="is a sweep: load it with load_variants"):
        load_experiment(write(tmp_path, "sweep: {track: [Spain_track]}\n"))


def test_validate_lists_the_variants_and_synth_makes_one_stack_each(tmp_path: Path) -> None:
    path = write(tmp_path, "sweep:\n  track: [reInvent2019_track, Spain_track]\n")
    names = sorted(s.name for s in load_variants(path))
    result = subprocess.run(
        [sys.executable, "-m", "rollouts", "validate", str(path), "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)["files"]
    assert sorted(v["name"] for v in entry["sweep"]["variants"]) == names
    sys.path.insert(0, str(REPO))
    import app

    config = app.resolve_config(
        {**json.loads((REPO / "cdk.json").read_text())["context"], "experiment": str(path)}
    )
    assert sorted(spec.name for spec in config.experiments) == names
