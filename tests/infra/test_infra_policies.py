"""Policy checks on everything synthesized: IAM scope, cdk-nag, cfn-lint."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from synth_support import REPO, VARIANTS, Synthesis, cdk_context
from tests_paths import EXPERIMENTS

# Actions that AWS authorizes on "*" only; each use is acknowledged beside its resource.
STAR_RESOURCE_ACTIONS = {
    "ec2:DescribeVpcs",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeDhcpOptions",
    "cloudwatch:PutMetricData",  # conditioned on SageMaker's namespace
    "ecr:GetAuthorizationToken",
    "batch:ListJobs",
    "batch:DescribeJobs",
    # The run supervisor's reads (DescribeStacks without a name lists the account's stacks).
    "cloudformation:DescribeStacks",
    "batch:DescribeJobQueues",
    "sagemaker:Search",
    "robomaker:ListSimulationJobBatches",
    "robomaker:ListSimulationJobs",
    # CDK's Step Functions logging for the Provider framework's waiter.
    "logs:CreateLogDelivery",
    "logs:CreateLogStream",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutLogEvents",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
}


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for statement in props["PolicyDocument"]["Statement"]:
                yield logical_id, statement
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield logical_id, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_action_and_star_resource_only_where_aws_requires(
    each_backend: Synthesis,
) -> None:
    checked = 0
    for stack, template in each_backend.templates.items():
        for policy, statement in statements(template):
            actions = as_list(statement["Action"])
            checked += 1
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), (
                stack,
                policy,
                actions,
            )
            if "*" in as_list(statement["Resource"]):
                assert set(actions) <= STAR_RESOURCE_ACTIONS, (stack, policy, actions)
                if "cloudwatch:PutMetricData" in actions:
                    assert statement["Condition"] == {
                        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}
                    }
    assert checked > 20


def _role_logical_id(template: dict[str, Any], suffix: str) -> str:
    [logical_id] = [
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and k.startswith(f"Jobs{suffix}")
    ]
    return logical_id


def test_pass_role_only_for_the_experiments_own_job_roles_to_their_services(
    each_backend: Synthesis,
) -> None:
    experiments = [n for n in each_backend.templates if n != "DeepRacerRollouts-Platform"]
    for name in experiments:
        template = each_backend.templates[name]
        passes = [s for _p, s in statements(template) if "iam:PassRole" in as_list(s["Action"])]
        expected = {_role_logical_id(template, "TrainerRole"): "sagemaker.amazonaws.com"}
        if each_backend.backend == "robomaker":
            expected[_role_logical_id(template, "RolloutRole")] = "robomaker.amazonaws.com"
        assert len(passes) == len(expected), name
        for statement in passes:
            assert statement["Action"] == "iam:PassRole"
            role = statement["Resource"]["Fn::GetAtt"][0]
            assert statement["Condition"] == {
                "StringEquals": {"iam:PassedToService": expected[role]}
            }
    assert not [
        s for _p, s in statements(each_backend.platform) if "iam:PassRole" in as_list(s["Action"])
    ], "the platform passes no role"


def test_trainer_network_interfaces_only_in_the_platform_vpc(each_backend: Synthesis) -> None:
    for name, template in each_backend.templates.items():
        if name == "DeepRacerRollouts-Platform":
            continue
        [statement] = [
            s
            for policy, s in statements(template)
            if policy.startswith("JobsTrainerRole") and "ec2:CreateNetworkInterface" in s["Action"]
        ]
        condition = statement["Condition"]["ArnEquals"]["ec2:Vpc"]
        assert {"Ref": "PlatformVpcId"} in condition["Fn::Join"][1], name
    vpc_parameter = [
        r
        for r in each_backend.platform["Resources"].values()
        if r["Type"] == "AWS::SSM::Parameter" and r["Properties"]["Name"].endswith("/vpc-id")
    ]
    [parameter] = vpc_parameter
    assert parameter["Properties"]["Value"]["Ref"].startswith("NetworkVpc")


def test_fanout_touches_only_its_own_experiment(batch: Synthesis) -> None:
    template = batch.experiment("oa-multi-track")
    role_policy = [s for policy, s in statements(template) if policy.startswith("RunRoleDefault")]
    s3 = [s for s in role_policy if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    for statement in s3:
        text = json.dumps(statement["Resource"])
        if statement["Action"] == "s3:ListBucket":
            assert statement["Condition"] == {
                "StringLike": {"s3:prefix": ["experiments/oa-multi-track/*"]}
            }
        elif "cdk-hnb659fds-assets" not in text:  # the bundle asset object
            assert "/experiments/oa-multi-track/" in text, text
    deletes = [s for s in s3 if "s3:DeleteObject" in as_list(s["Action"])]
    assert [json.dumps(s["Resource"]) for s in deletes] == [
        '{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", '
        '{"Ref": "PlatformBucketName"}, "/experiments/oa-multi-track/runs/*/ip/*"]]}'
    ]
    stops = [s for s in role_policy if "batch:TerminateJob" in as_list(s["Action"])]
    assert stops[0]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/rollouts:experiment": "oa-multi-track"}
    }
    trainer = [s for s in role_policy if "sagemaker:CreateTrainingJob" in as_list(s["Action"])]
    assert json.dumps(trainer[0]["Resource"]).endswith(':training-job/oa-multi-track-????????"]]}')


def test_every_acknowledgement_has_a_reason_beside_its_resource(repo: Path) -> None:
    import aws_cdk as cdk

    import app as cdk_app

    for backend in ("batch", "robomaker"):
        context = cdk_context(backend=backend, experiment="all")
        app = cdk.App(context=context)
        cdk_app.build_app(app, cdk_app.resolve_config(context), nag=False)
        key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
        ours = 0
        for node in app.node.find_all():
            for entry in node.node.metadata:
                if entry.type != key:
                    continue
                for rule, reason in entry.data.items():
                    if not rule.startswith("Annotation::AwsSolutions-"):
                        continue  # acknowledgements aws-cdk-lib makes for itself
                    ours += 1
                    assert len(reason) >= 40, (node.node.path, rule, reason)
                    assert node.node.path.count("/") >= 1, f"{rule} acknowledged on a whole stack"
        assert ours >= 15


def test_cdk_nag_fails_synth_on_an_unacknowledged_finding() -> None:
    """Control: nag runs in synth, so a careless resource breaks it."""
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs

    import app as cdk_app

    context = cdk_context()
    app = cdk.App(context=context)
    cdk_app.build_app(app, cdk_app.resolve_config(context))
    platform = app.node.find_child("DeepRacerRollouts-Platform")
    sqs.Queue(platform, "CarelessQueue")  # no DLQ, no TLS-only policy
    with pytest.raises(RuntimeError, match=r"(?s)AwsSolutions-SQS3.*AwsSolutions-SQS4"):
        app.synth()


@pytest.mark.parametrize("synthesis_id", ["batch", "robomaker", *VARIANTS])
def test_cfn_lint_passes_on_every_template(
    synthesis_id: str, request: pytest.FixtureRequest, variant: Any
) -> None:
    synthesis = (
        request.getfixturevalue(synthesis_id)
        if synthesis_id in ("batch", "robomaker")
        else variant(synthesis_id)
    )
    templates = [str(p) for p in sorted(synthesis.outdir.glob("*.template.json"))]
    # The platform and one stack per experiment (a sweep: per variant) synthesized (all files,
    # or the default one).
    from rollouts.spec import load_variants

    experiments = (
        sum(len(load_variants(p)) for p in EXPERIMENTS.glob("*.yaml"))
        if synthesis_id in ("batch", "robomaker")
        else 1
    )
    assert len(templates) == 1 + experiments
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--config-file",
            str(REPO / ".cfnlintrc.yaml"),
            "--",
            *templates,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("backend", ["batch", "robomaker"])
def test_every_acknowledgement_answers_a_real_finding(
    backend: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Synthesize with acknowledgements recorded but not applied: each must match a finding,
    and every finding must have been acknowledged (nothing stale, nothing missing)."""
    import aws_cdk as cdk

    import app as cdk_app
    import constructs_lib.nag as nag

    recorded: list[tuple[str, str]] = []

    class Recorder:
        def __init__(self, construct: Any) -> None:
            self.path = construct.node.path

        def acknowledge(self, *rules: Any) -> None:
            recorded.extend((self.path, rule.id) for rule in rules)

    monkeypatch.setattr(nag, "Validations", type("V", (), {"of": staticmethod(Recorder)}))
    context = cdk_context(backend=backend, experiment="all", egress="endpoints")
    app = cdk.App(context=context, outdir=str(tmp_path))
    cdk_app.build_app(app, cdk_app.resolve_config(context), staging_dir=tmp_path / "stage")
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    findings = {
        (c["constructPath"], v["ruleName"])
        for plugin in report["pluginReports"]
        if plugin["pluginName"] == "AwsSolutions"
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }
    for path, rule in recorded:
        assert any(p.startswith(path + "/") and r == rule for p, r in findings), (
            f"stale acknowledgement {rule} on {path}"
        )
    for path, rule in findings:
        assert any(path.startswith(p + "/") and r == rule for p, r in recorded), (
            f"unacknowledged finding {rule} on {path}"
        )
