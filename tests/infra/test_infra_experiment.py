"""What matters in an experiment stack: streams, the run's properties and outputs."""

from __future__ import annotations

from typing import Any

import pytest
from synth_support import Synthesis
from tests_paths import EXPERIMENTS

from rollouts.spec import load_variants


def by_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def run_properties(template: dict[str, Any]) -> dict[str, Any]:
    [run] = by_type(template, "Custom::RolloutsRun").values()
    return run["Properties"]


@pytest.mark.parametrize(
    "experiment_file", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.stem
)
def test_one_encrypted_video_stream_per_rollout(experiment_file: Any, batch: Synthesis) -> None:
    spec = load_variants(experiment_file)[0]
    template = batch.experiment(spec.name)
    streams = by_type(template, "AWS::KinesisVideo::Stream")
    expected = spec.rollouts.count if spec.video else 0
    assert len(streams) == expected
    names = [f"rollouts-{spec.name}-{i}" for i in range(expected)]  # worker order
    assert sorted(s["Properties"]["Name"] for s in streams.values()) == sorted(names)
    for stream in streams.values():
        assert stream["Properties"]["KmsKeyId"] == {"Ref": "PlatformKeyArn"}
        assert stream["Properties"]["DataRetentionInHours"] == 24
        assert stream["Properties"]["MediaType"] == "video/h264"
    props = run_properties(template)
    assert props["VideoStreams"] == names
    assert props["RolloutCount"] == str(spec.rollouts.count)
    assert props["Worlds"] == list(spec.worker_tracks)


def test_per_worker_tracks_reach_the_run(batch: Synthesis) -> None:
    props = run_properties(batch.experiment("oa-multi-track"))
    assert props["Worlds"] == ["reInvent2019_track", "2022_april_open", "reInvent2019_wide"]


def test_backend_specific_run_properties(batch: Synthesis, robomaker: Synthesis) -> None:
    template = batch.experiment("reinvent-time-trial")
    batch_props = run_properties(template)
    assert batch_props["Backend"] == "batch"
    [own_definition] = [
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::Batch::JobDefinition"
    ]
    [own_queue] = [
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::Batch::JobQueue"
    ]
    assert batch_props["Batch"] == {
        "JobQueueArn": {"Fn::GetAtt": [own_queue, "JobQueueArn"]},  # its own queue
        "JobDefinitionArn": {"Ref": own_definition},  # the experiment's own, with its own role
        "AttemptDurationSeconds": str(120 * 60 + 1800),
        "Vcpus": "4",
        "MemoryMib": "8192",
    }
    assert "RoboMaker" not in batch_props
    robomaker_props = run_properties(robomaker.experiment("reinvent-time-trial"))
    assert robomaker_props["Backend"] == "robomaker"
    assert robomaker_props["RoboMaker"]["SimulationApplicationArn"] == {
        "Ref": "PlatformSimulationApplicationArn"
    }
    assert "Batch" not in robomaker_props
    for synthesis, props in ((batch, batch_props), (robomaker, robomaker_props)):
        assert props["Trainer"]["InstanceType"] == "ml.c5.2xlarge"
        assert props["Trainer"]["MaxRuntimeSeconds"] == "7200"
        [(own_trainer_group, _)] = [
            (k, r)
            for k, r in synthesis.experiment("reinvent-time-trial")["Resources"].items()
            if r["Type"] == "AWS::EC2::SecurityGroup"
            and r["Properties"]["GroupDescription"].startswith("DeepRacer trainer")
        ]
        assert props["Trainer"]["SecurityGroups"] == [
            {"Fn::GetAtt": [own_trainer_group, "GroupId"]}
        ]
        assert props["Prefix"] == "experiments/reinvent-time-trial"


def test_fanout_lambda_and_provider_stay_inside_cloudformation_limits(
    each_backend: Synthesis,
) -> None:
    template = each_backend.experiment("reinvent-time-trial")
    functions = by_type(template, "AWS::Lambda::Function")
    handlers = {f["Properties"]["Handler"] for f in functions.values()}
    assert {"fanout.handler.on_event", "fanout.handler.is_complete"} <= handlers
    [machine] = by_type(template, "AWS::StepFunctions::StateMachine").values()
    definition = "".join(
        str(part) for part in machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    )
    # on_event (2 min) + the waiter polling every 30 s at most 90 times (45 min) stay inside
    # CloudFormation's 1 h wait for a custom resource.
    assert '"IntervalSeconds":30' in definition
    assert '"MaxAttempts":90' in definition
    timeouts = {f["Properties"]["Handler"]: f["Properties"]["Timeout"] for f in functions.values()}
    assert timeouts["fanout.handler.on_event"] == 120
    assert timeouts["fanout.handler.on_event"] + 30 * 90 < 3600


def test_outputs_name_the_run(each_backend: Synthesis) -> None:
    outputs = each_backend.experiment("reinvent-time-trial")["Outputs"]
    assert outputs["ExperimentPrefix"]["Value"] == "experiments/reinvent-time-trial"
    assert outputs["RunId"]["Value"] == {
        "Ref": next(
            iter(by_type(each_backend.experiment("reinvent-time-trial"), "Custom::RolloutsRun"))
        )
    }
    assert outputs["VideoStreams"]["Value"].count(",") == 3
    expected = {"JobQueue"} if each_backend.backend == "batch" else {"SimulationJobBatchArn"}
    assert expected <= outputs.keys()


def test_experiment_bundle_is_an_asset_with_every_worker_params(batch: Synthesis) -> None:
    import json
    import zipfile

    manifest = json.loads(
        (batch.outdir / "DeepRacerRollouts-oa-multi-track.assets.json").read_text()
    )
    props = run_properties(batch.experiment("oa-multi-track"))
    [files] = [
        f
        for f in manifest["files"].values()
        if any(d["objectKey"] == props["FilesKey"] for d in f["destinations"].values())
    ]
    staged = batch.outdir / files["source"]["path"]
    names = (
        sorted(p.name for p in staged.iterdir())
        if staged.is_dir()
        else sorted(zipfile.ZipFile(staged).namelist())
    )
    assert names == [
        "hyperparameters.json",
        "manifest.json",
        "model_metadata.json",
        "reward_function.py",
        "training_params_0.yaml",
        "training_params_1.yaml",
        "training_params_2.yaml",
    ]


def test_each_run_gets_its_own_data_prefix_output(batch: Synthesis) -> None:
    template = batch.experiment("reinvent-time-trial")
    outputs = template["Outputs"]
    assert outputs["ExperimentPrefix"]["Value"] == "experiments/reinvent-time-trial"
    run_logical_id = next(iter(by_type(template, "Custom::RolloutsRun")))
    assert outputs["RunPrefix"]["Value"] == {
        "Fn::Join": ["", ["experiments/reinvent-time-trial/runs/", {"Ref": run_logical_id}]]
    }
    # The fan-out gets the experiment prefix; it adds runs/<run id> itself.
    assert run_properties(template)["Prefix"] == "experiments/reinvent-time-trial"


def test_robomaker_runs_say_which_app_form_they_launch(robomaker: Synthesis, variant: Any) -> None:
    bundle = run_properties(robomaker.experiment("reinvent-time-trial"))
    assert bundle["RoboMaker"]["AppForm"] == "bundle"
    container = run_properties(variant("robomaker-container").experiment("reinvent-time-trial"))
    assert container["RoboMaker"]["AppForm"] == "container"
