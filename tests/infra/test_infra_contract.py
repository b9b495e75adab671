"""The two halves of the fan-out meet at the custom resource's properties: the synthesized
properties (deploy-time references replaced by realistic values) must parse in the Lambda."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fanout.props import RunProps, parse_properties
from synth_support import Synthesis

ACCOUNT = "123456789012"
DEPLOY_TIME_VALUES = {
    "PlatformBucketName": "deepracer-data-bucket",
    "PlatformImageUri": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/simapp:abc",
    # List<AWS::EC2::Subnet::Id> parameters: a Ref is the list.
    "PlatformTrainerSubnets": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "PlatformRolloutSubnets": ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"],
    "PlatformRolloutEgressSecurityGroup": "sg-0123456789abcdef1",
    "PlatformAssignPublicIp": "true",
    "PlatformSimulationApplicationArn": f"arn:aws:robomaker:us-east-1:{ACCOUNT}:simulation-application/deepracer/1",
}


# What the experiment's own resources resolve to, by type (Ref / GetAtt Arn).
OWN_RESOURCES = {
    "AWS::Batch::JobDefinition": f"arn:aws:batch:us-east-1:{ACCOUNT}:job-definition/rollout:3",
    "AWS::Batch::JobQueue": f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/experiment-rollouts",
    "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/experiment-job-role",
    "AWS::Lambda::Function": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:provider",
}


def own_group_id(logical_id: str) -> str:
    """A security group id of the experiment's own, told apart by its logical id."""
    return "sg-" + hashlib.sha256(logical_id.encode()).hexdigest()[:17]


def group_described(template: dict[str, Any], start: str) -> str:
    [found] = [
        logical_id
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::EC2::SecurityGroup"
        and r["Properties"]["GroupDescription"].startswith(start)
    ]
    return own_group_id(found)


def resolve(value: Any, template: dict[str, Any]) -> Any:
    """Evaluate the few intrinsics the run's properties use, as CloudFormation would."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            own = template["Resources"].get(value["Ref"])
            return OWN_RESOURCES[own["Type"]] if own else DEPLOY_TIME_VALUES[value["Ref"]]
        if set(value) == {"Fn::Split"}:
            separator, text = value["Fn::Split"]
            return resolve(text, template).split(separator)
        if set(value) == {"Fn::Sub"}:
            return (
                value["Fn::Sub"]
                .replace("${AWS::AccountId}", ACCOUNT)
                .replace("${AWS::Region}", "us-east-1")
            )
        if set(value) == {"Fn::GetAtt"}:
            logical_id = value["Fn::GetAtt"][0]
            if template["Resources"][logical_id]["Type"] == "AWS::EC2::SecurityGroup":
                return own_group_id(logical_id)
            return OWN_RESOURCES[template["Resources"][logical_id]["Type"]]
        return {k: resolve(v, template) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, template) for v in value]
    return value


@pytest.mark.parametrize("experiment", ["reinvent-time-trial", "oa-multi-track", "h2b-continuous"])
def test_synthesized_properties_parse_in_the_lambda(
    experiment: str, each_backend: Synthesis
) -> None:
    template = each_backend.experiment(experiment)
    [run] = [r for r in template["Resources"].values() if r["Type"] == "Custom::RolloutsRun"]
    raw = resolve(run["Properties"], template)
    raw.pop("ServiceToken")
    props = parse_properties(raw)
    assert props.experiment == experiment
    assert props.backend == each_backend.backend
    assert props.prefix == f"experiments/{experiment}"
    assert len(props.worlds) == props.rollout_count
    assert props.trainer.subnets == ("subnet-0123456789abcdef0", "subnet-0123456789abcdef1")
    # The trainer carries the experiment's own group, the one that admits its rollouts.
    assert props.trainer.security_groups == (group_described(template, "DeepRacer trainer"),)
    if each_backend.backend == "batch":
        assert props.batch is not None and props.batch.vcpus == 4
        assert props.batch.job_queue_arn == OWN_RESOURCES["AWS::Batch::JobQueue"]
    else:
        assert props.robomaker is not None and props.robomaker.assign_public_ip is True
        assert props.robomaker.security_groups == (
            group_described(template, "DeepRacer rollouts"),
            DEPLOY_TIME_VALUES["PlatformRolloutEgressSecurityGroup"],
        )


def _synthesize_one(
    tmp_path_factory: pytest.TempPathFactory, name: str, body: str
) -> tuple[dict[str, Any], RunProps]:
    """Synthesize one experiment file (``body`` after its name, track, model and reward) and
    parse its run's properties as the Lambda would (tokens resolved to sample values)."""
    from synth_support import REPO, synthesize

    folder = tmp_path_factory.mktemp(name)
    (folder / "reward.py").write_text("def reward_function(params):\n    return 1.0\n")
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\ntrack: 2022_april_open\n"
        f"model_metadata: {REPO / 'experiments' / 'models' / 'discrete-5-actions.json'}\n"
        f"reward_function: reward.py\n{body}"
    )
    synthesis = synthesize(
        tmp_path_factory.mktemp("out"), folder / "stage", experiment=str(folder / f"{name}.yaml")
    )
    template = synthesis.experiment(name)
    [run] = [r for r in template["Resources"].values() if r["Type"] == "Custom::RolloutsRun"]
    raw = resolve(run["Properties"], template)
    raw.pop("ServiceToken")
    return template, parse_properties(raw)


def test_edge_case_spec_parses_in_the_lambda(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Everything the spec accepts, the Lambda must accept: every tag character the spec
    allows, a pretrained model, per-worker tracks, more than ten workers."""
    _, props = _synthesize_one(
        tmp_path_factory,
        "edge-case",
        "hyperparameters: {num_episodes_between_training: 24}\n"
        "rollouts:\n  count: 12\n  overrides:\n    - {worker: 11, track: reInvent2019_wide_cw}\n"
        "pretrained: {prefix: experiments/reinvent-time-trial, checkpoint: best}\n"
        "tags: {'Team Name_1.2:/=+-': 'a value: 1/2 = x + y_z.-', cost-center: '42'}\n",
    )
    assert props.rollout_count == 12 and props.worlds[11] == "reInvent2019_wide_cw"
    assert props.tags == {"Team Name_1.2:/=+-": "a value: 1/2 = x + y_z.-", "cost-center": "42"}
    assert props.trainer.pretrained_prefix == "experiments/reinvent-time-trial"
    assert props.trainer.pretrained_bucket == "deepracer-data-bucket"
    assert props.trainer.pretrained_checkpoint == "best"


def test_pretrained_run_of_another_experiment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`pretrained: {experiment, run: latest}` reaches the Lambda as an experiment prefix plus
    PretrainedRun. The fan-out may read what it needs to find that model and copy its chosen
    checkpoint into the new run's prefix (the other experiment's run.json and its runs' model/
    folders, read only) and list those folders; no job role of the new experiment holds any
    grant on the other experiment's data."""
    template, props = _synthesize_one(
        tmp_path_factory,
        "next-step",
        "pretrained: {experiment: reinvent-time-trial, run: latest, checkpoint: best}\n",
    )
    assert props.trainer.pretrained_prefix == "experiments/reinvent-time-trial"
    assert props.trainer.pretrained_run == "latest"
    assert props.trainer.pretrained_checkpoint == "best"
    statements = [
        (logical_id, s)
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Policy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    [statement] = [s for _, s in statements if s.get("Sid") == "FindPretrainedModel"]
    assert statement["Action"] == "s3:GetObject"
    keys = sorted(json.dumps(r).split('"/')[-1].rstrip('"]}') for r in statement["Resource"])
    assert keys == [
        "experiments/reinvent-time-trial/run.json",
        "experiments/reinvent-time-trial/runs/*/model/*",
    ]
    [listing] = [s for _, s in statements if s.get("Sid") == "ListExperimentPrefix"]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [
        "experiments/next-step/*",
        "experiments/reinvent-time-trial/runs/*/model/*",
    ]
    # The job roles: nothing outside their own experiment
    for logical_id, s in statements:
        if logical_id.startswith("Jobs"):
            assert "reinvent-time-trial" not in json.dumps(s), (logical_id, s)
