"""The cost of a run before it is deployed, computed here again from the price table; and
budget_usd, which validate, plan and synth all enforce (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from app_support import run_app

from rollouts.cost import prices, run_cost
from rollouts.spec import SpecError, load_experiment, load_variants

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "experiments" / "models" / "discrete-5-actions.json"


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "reward.py").write_text("def reward_function(params):\n    return 1.0\n")
    path = tmp_path / "costly.yaml"
    path.write_text(
        "name: costly\ntrack: reInvent2019_track\nreward_function: reward.py\n"
        f"model_metadata: {MODEL}\n" + textwrap.dedent(body)
    )
    return path


def test_the_table_is_dated_and_names_its_sources() -> None:
    table = prices()
    assert table["as_of"] == "2026-12-02" and table["region"] == "us-east-1"
    assert set(table["sources"]) >= {"sagemaker_training", "fargate", "kinesis_video"}
    assert table["sagemaker_training_hourly"]["ml.c5.2xlarge"] > 0


def test_the_default_experiment_costs_what_the_table_says() -> None:
    spec = load_experiment(REPO / "experiments" / "default.yaml")
    t = prices()
    hours = 120 / 60
    task = (
        4 * t["fargate_vcpu_hourly"]
        + 8 * t["fargate_gb_hourly"]
        + 40 * t["fargate_storage_gb_hourly"]
    )
    trainer = t["sagemaker_training_hourly"]["ml.c5.2xlarge"] * hours
    rollouts_worst = 4 * (hours + 0.5) * task  # the jobs' 30-minute margin beyond the trainer
    rollouts_spot = 4 * hours * task * (1 - t["fargate_spot_discount"])
    video = 4 * hours * t["video_gb_per_hour"] * t["kinesis_video_ingest_per_gb"]
    evaluation = 4 * t["evaluation_hours_per_leg"] * task  # 2 tracks x both directions
    # Each of the 4 tasks has a public IPv4 address (egress public); every job writes logs.
    ip_worst, ip_estimate = (
        4 * (hours + 0.5) * t["public_ipv4_hourly"],
        4 * hours * t["public_ipv4_hourly"],
    )
    logs = t["log_gb_per_job_hour"] * t["cloudwatch_logs_ingest_per_gb"]
    logs_worst, logs_estimate = (hours + 4 * (hours + 0.5)) * logs, (hours + 4 * hours) * logs
    cost = run_cost(spec, spot=True)
    worst = trainer + rollouts_worst + video + evaluation + ip_worst + logs_worst
    estimate = (
        trainer
        + rollouts_spot
        + video
        + evaluation * (1 - t["fargate_spot_discount"])
        + ip_estimate
        + logs_estimate
    )
    # Totals are the exact sums, rounded once (not sums of rounded lines).
    assert cost.worst_case_exact == pytest.approx(worst)
    assert cost.worst_case_usd == round(worst, 2)
    assert cost.estimate_exact == pytest.approx(estimate)
    assert cost.estimate_usd == round(estimate, 2)
    on_demand = run_cost(spec, spot=False)
    assert on_demand.estimate_usd > cost.estimate_usd
    assert on_demand.worst_case_usd == cost.worst_case_usd
    # Each line's quantity is what it prices: the rollouts' margin is a line of its own.
    by_item = {line.item.split(" (")[0]: line for line in cost.lines}
    assert by_item["rollouts 4 x 4 vCPU / 8192 MiB"].quantity == 4 * hours
    assert by_item["rollouts 4 x 4 vCPU / 8192 MiB"].on_demand_usd == round(4 * hours * task, 2)
    margin = next(line for line in cost.lines if line.item.startswith("rollouts after the trainer"))
    assert margin.quantity == 4 * 0.5 and margin.estimate_usd == 0.0
    # No public addresses with egress nat or endpoints.
    private = run_cost(spec, spot=True, public_ip=False)
    assert private.worst_case_exact == pytest.approx(worst - ip_worst)


def test_the_robomaker_backend_is_not_priced_as_fargate() -> None:
    spec = load_experiment(REPO / "experiments" / "default.yaml")
    cost = run_cost(spec, backend="robomaker")
    assert cost.worst_case_usd is None
    assert any("RoboMaker" in m and "retired" in m for m in cost.missing)
    assert not any("Fargate" in line.item for line in cost.lines)


def test_an_instance_without_a_price_is_said_so(tmp_path: Path) -> None:
    spec = load_experiment(write(tmp_path, "trainer: {instance_type: ml.c5.18xlarge}\n"))
    cost = run_cost(spec)
    assert cost.worst_case_usd is None and cost.missing == ("SageMaker training ml.c5.18xlarge",)
    with pytest.raises(SpecError, match=r"no price for SageMaker training ml\.c5\.18xlarge"):
        load_experiment(
            write(tmp_path, "trainer: {instance_type: ml.c5.18xlarge}\nbudget_usd: 5\n")
        )


def test_budget_refuses_in_validate_plan_and_synth(tmp_path: Path) -> None:
    path = write(tmp_path, "budget_usd: 0.5\n")
    with pytest.raises(SpecError) as caught:
        load_experiment(path)
    [problem] = caught.value.problems
    assert problem.field == "budget_usd" and "is below the run's worst case, $" in problem.message
    for argv in (["validate", str(path)], ["plan", str(path)]):
        result = subprocess.run(
            [sys.executable, "-m", "rollouts", *argv],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
        )
        assert result.returncode == 2, argv
        assert "budget_usd" in result.stdout + result.stderr
    synth = run_app(json.dumps({"experiment": str(path)}), cwd=REPO, outdir=tmp_path / "out")
    assert synth.returncode == 2 and "budget_usd" in synth.stderr
    assert not (tmp_path / "out").exists()
    assert load_experiment(write(tmp_path, "budget_usd: 50\n")).budget_usd == 50


def test_a_sweeps_budget_covers_every_variant(tmp_path: Path) -> None:
    one = run_cost(load_experiment(write(tmp_path, ""))).worst_case_usd
    assert one is not None
    fits_one = round(one * 1.5, 2)
    path = write(
        tmp_path, f"budget_usd: {fits_one}\nsweep: {{track: [reInvent2019_track, Spain_track]}}\n"
    )
    with pytest.raises(SpecError, match="is below the 2 variants' worst case together"):
        load_variants(path)
