"""The run supervisor as deployed: what triggers it, what it may do, and the contract between an
experiment stack's Supervision output and the Lambda that reads it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from supervisor.observe import TAG_PLATFORM, parse_rules
from synth_support import Synthesis
from test_infra_policies import as_list, statements

WRITE_PREFIXES = (
    "Put",
    "Delete",
    "Stop",
    "Terminate",
    "Cancel",
    "Submit",
    "Tag",
    "Publish",
    "Create",
)


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _function(template: dict[str, Any]) -> dict[str, Any]:
    [function] = [
        r
        for r in _resources(template, "AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == "supervisor.handler.on_event"
    ]
    return function


def _supervisor_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy, s in statements(template) if policy.startswith("SupervisorRole")]


def test_the_supervisor_lives_in_the_platform_and_runs_one_at_a_time(
    each_backend: Synthesis,
) -> None:
    function = _function(each_backend.platform)["Properties"]
    assert function["ReservedConcurrentExecutions"] == 1
    assert function["Timeout"] == 180
    config = function["Environment"]["Variables"]["SUPERVISOR_CONFIG"]
    assert "topicArn" in json.dumps(config) and '"platform\\":\\"default' in json.dumps(config)
    for name, template in each_backend.templates.items():
        if name != "DeepRacerRollouts-Platform":
            assert not [
                r
                for r in _resources(template, "AWS::Lambda::Function").values()
                if r["Properties"].get("Handler", "").startswith("supervisor.")
            ]


def test_events_and_a_one_minute_sweep_trigger_it(batch: Synthesis) -> None:
    rules = _resources(batch.platform, "AWS::Events::Rule")
    patterns = {
        json.dumps(r["Properties"].get("EventPattern", {}).get("detail-type")): r["Properties"]
        for r in rules.values()
    }
    batch_rule = patterns['["Batch Job State Change"]']["EventPattern"]["detail"]
    assert batch_rule["status"] == ["SUCCEEDED", "FAILED"]
    assert batch_rule["tags"] == {"rollouts:experiment": [{"exists": True}]}
    sagemaker = patterns['["SageMaker Training Job State Change"]']["EventPattern"]["detail"]
    assert sagemaker["TrainingJobStatus"] == ["Completed", "Failed", "Stopped"]
    stacks = patterns['["CloudFormation Stack Status Change"]']["EventPattern"]["detail"]
    assert "DELETE_IN_PROGRESS" in stacks["status-details"]["status"]
    assert "UPDATE_ROLLBACK_COMPLETE" in stacks["status-details"]["status"]
    assert "stack/DeepRacerRollouts-" in json.dumps(stacks["stack-id"])
    [sweep] = [r["Properties"] for r in rules.values() if "ScheduleExpression" in r["Properties"]]
    assert sweep["ScheduleExpression"] == "rate(1 minute)"
    for rule in (patterns[k] for k in patterns if k != "null"):
        assert rule["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_it_may_stop_only_tagged_jobs(each_backend: Synthesis) -> None:
    stops = {
        action: s
        for s in _supervisor_statements(each_backend.platform)
        for action in as_list(s["Action"])
        if action in ("batch:TerminateJob", "sagemaker:StopTrainingJob", "batch:CancelJob")
    }
    assert set(stops) == {"batch:TerminateJob", "sagemaker:StopTrainingJob"}
    for statement in stops.values():
        assert statement["Condition"] == {"Null": {"aws:ResourceTag/rollouts:experiment": "false"}}


def test_every_write_it_may_make_is_scoped(each_backend: Synthesis) -> None:
    writes: dict[str, Any] = {}
    for statement in _supervisor_statements(each_backend.platform):
        for action in as_list(statement["Action"]):
            if action.split(":")[1].startswith(WRITE_PREFIXES):
                writes[action] = statement
                assert "*" not in as_list(statement["Resource"]), action
    assert set(writes) == {
        "batch:TerminateJob",
        "sagemaker:StopTrainingJob",
        "batch:SubmitJob",
        "batch:TagResource",
        "s3:PutObject",
        "sns:Publish",
        "logs:CreateLogStream",  # its own log group (checked below)
        "logs:PutLogEvents",
    }
    assert "SupervisorLogs" in json.dumps(writes["logs:PutLogEvents"]["Resource"])
    assert writes["batch:SubmitJob"]["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/{TAG_PLATFORM}": "default"}
    }
    # A job definition only with its revision: Batch checks its tags only then.
    assert any(
        "job-definition/*:*" in json.dumps(r)
        for r in as_list(writes["batch:SubmitJob"]["Resource"])
    )
    assert writes["batch:TagResource"]["Condition"] == {
        "Null": {"aws:RequestTag/rollouts:experiment": "false"}
    }
    assert writes["sns:Publish"]["Resource"]["Ref"].startswith("SupervisorRuns")


def test_its_topic_is_encrypted_and_tls_only(
    batch: Synthesis, variant: Callable[[str], Synthesis]
) -> None:
    [topic] = _resources(batch.platform, "AWS::SNS::Topic").values()
    assert "DataKey" in json.dumps(topic["Properties"]["KmsMasterKeyId"])
    [policy] = _resources(batch.platform, "AWS::SNS::TopicPolicy").values()
    [deny] = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert _resources(batch.platform, "AWS::SNS::Subscription") == {}
    [subscription] = _resources(
        variant("batch-on-demand").platform, "AWS::SNS::Subscription"
    ).values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "team@example.com"


def test_experiment_stacks_carry_the_platform_tag_and_rules_the_lambda_reads(
    batch: Synthesis,
) -> None:
    from synth_support import cdk_context

    import app as cdk_app

    specs = {s.name: s for s in cdk_app.resolve_config(cdk_context(experiment="all")).experiments}
    for name, spec in specs.items():
        template = batch.experiment(name)
        rules = parse_rules(template["Outputs"]["Supervision"]["Value"])
        assert rules.on_failure == spec.rollouts.on_failure
        assert rules.max_restarts == spec.rollouts.max_restarts
        assert rules.stall_minutes == spec.rollouts.stall_minutes
        assert rules.budget_usd == spec.budget_usd
        assert rules.rollout_usd_per_hour > 0
        # The supervisor lists the platform's queues and restarts onto queues and job
        # definitions by this tag.
        for kind in ("AWS::Batch::JobQueue", "AWS::Batch::JobDefinition"):
            [resource] = _resources(template, kind).values()
            tags = resource["Properties"]["Tags"]
            assert tags[TAG_PLATFORM] == "default" and tags["rollouts:experiment"] == name


@pytest.mark.parametrize("garbled", ["", "{", '{"onFailure": "explode", "maxRestarts": "x"}', "[]"])
def test_a_garbled_supervision_output_falls_back_to_the_documented_defaults(garbled: str) -> None:
    rules = parse_rules(garbled)
    assert (rules.on_failure, rules.max_restarts, rules.stall_minutes, rules.budget_usd) == (
        "restart",
        3,
        30,
        None,
    )


def _joined(value: Any) -> str:
    """A Fn::Join of strings and references, the references as sample values."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else f"sample-{next(iter(p.values()))}" for p in parts)


def test_the_synthesized_configuration_parses_in_the_lambda(batch: Synthesis) -> None:
    from supervisor.observe import Settings

    function = _function(batch.platform)["Properties"]
    settings = Settings.from_json(
        _joined(function["Environment"]["Variables"]["SUPERVISOR_CONFIG"])
    )
    assert settings.platform == "default"
    assert settings.bucket.startswith("sample-") and "DataBucket" in settings.bucket
    assert "SupervisorRuns" in settings.topic_arn
