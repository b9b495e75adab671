"""Details a snapshot alone would guard, asserted with the CDK's Template/Match: the rollouts'
one way out to the trainer's Redis, the fan-out's Lambda timeouts and its waiter."""

from __future__ import annotations

from aws_cdk.assertions import Match, Template
from synth_support import Synthesis


def test_rollouts_reach_the_trainer_on_6379_only(each_backend: Synthesis) -> None:
    template = Template.from_json(each_backend.experiment("reinvent-time-trial"))
    groups = template.find_resources("AWS::EC2::SecurityGroup")
    by_description = {
        v["Properties"]["GroupDescription"].split(":")[0]: k for k, v in groups.items()
    }
    rollout, trainer = by_description["DeepRacer rollouts"], by_description["DeepRacer trainer"]
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupEgress",
        {
            "GroupId": {"Fn::GetAtt": [rollout, "GroupId"]},
            "DestinationSecurityGroupId": {"Fn::GetAtt": [trainer, "GroupId"]},
            "IpProtocol": "tcp",
            "FromPort": 6379,
            "ToPort": 6379,
        },
    )
    # The only egress rule between the two groups, and the trainer's only inbound rule.
    template.resource_count_is("AWS::EC2::SecurityGroupEgress", 1)
    template.resource_count_is("AWS::EC2::SecurityGroupIngress", 1)
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "GroupId": {"Fn::GetAtt": [trainer, "GroupId"]},
            "SourceSecurityGroupId": {"Fn::GetAtt": [rollout, "GroupId"]},
            "FromPort": 6379,
            "ToPort": 6379,
        },
    )


def test_fanout_lambda_timeouts_and_waiter(each_backend: Synthesis) -> None:
    template = Template.from_json(each_backend.experiment("reinvent-time-trial"))
    # README, "The fan-out": on_event 2 minutes, is_complete 5 minutes.
    template.has_resource_properties(
        "AWS::Lambda::Function", {"Handler": "fanout.handler.on_event", "Timeout": 120}
    )
    template.has_resource_properties(
        "AWS::Lambda::Function", {"Handler": "fanout.handler.is_complete", "Timeout": 300}
    )
    # The waiter polls every 30 s, 90 times: 45 minutes inside CloudFormation's hour.
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "DefinitionString": {
                "Fn::Join": [
                    "",
                    Match.array_with(
                        [Match.string_like_regexp(r'"IntervalSeconds":30,"MaxAttempts":90')]
                    ),
                ]
            }
        },
    )
