"""The two job roles: the SageMaker trainer's and the rollout workers'.

Both are shared by every experiment of the platform, so their data access is scoped to the
bucket's ``experiments/`` prefix and their video access to streams named ``rollouts-*``.
The fan-out Lambda's role is per experiment (``constructs_lib/fanout.py``), scoped tighter.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from constructs_lib.nag import acknowledge, token_name
from constructs_lib.simapp_image import SimappImage
from constructs_lib.storage import ExperimentDataStore
from rollouts.naming import VIDEO_STREAM_PREFIX

_COLON = ArnFormat.COLON_RESOURCE_NAME
ROLLOUT_SERVICE = {"batch": "ecs-tasks.amazonaws.com", "robomaker": "robomaker.amazonaws.com"}


class RolloutRoles(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: ExperimentDataStore,
        vpc: ec2.IVpc,
        backend: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.trainer_role = iam.Role(
            self,
            "TrainerRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="DeepRacer trainer (SageMaker training job in VPC mode)",
        )
        self.rollout_role = iam.Role(
            self,
            "RolloutRole",
            assumed_by=iam.ServicePrincipal(ROLLOUT_SERVICE[backend]),
            description=f"DeepRacer rollout workers ({backend})",
        )
        for role in (self.trainer_role, self.rollout_role):
            data.grant_experiments_read_write(role)

        # SageMaker writes the trainer's logs and metrics with the job role.
        trainer_logs = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/sagemaker/TrainingJobs:*",
            arn_format=_COLON,
        )
        self.trainer_role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:CreateLogGroup",
                    "logs:DescribeLogStreams",
                ],
                resources=[trainer_logs],
            )
        )
        self.trainer_role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={
                    "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}
                },
            )
        )
        # VPC mode: SageMaker creates the trainer's network interface with the job role.
        self.trainer_role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:DescribeVpcs",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeDhcpOptions",
                ],
                resources=["*"],
            )
        )
        self.trainer_role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                resources=[
                    stack.format_arn(
                        service="ec2", resource="network-interface", resource_name="*"
                    ),
                    stack.format_arn(service="ec2", resource="subnet", resource_name="*"),
                    stack.format_arn(service="ec2", resource="security-group", resource_name="*"),
                ],
                # Only inside the platform's VPC.
                conditions={
                    "ArnEquals": {
                        "ec2:Vpc": stack.format_arn(
                            service="ec2", resource="vpc", resource_name=vpc.vpc_id
                        )
                    }
                },
            )
        )
        acknowledge(
            self.trainer_role,
            {
                "AwsSolutions-IAM5[Resource::*]": "ec2:Describe* and cloudwatch:PutMetricData do not support resource-level "
                "permissions; PutMetricData is limited to SageMaker's namespace by condition.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:"
                "network-interface/*]": "SageMaker VPC mode creates the trainer's ENI with a generated id at run time.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:"
                "subnet/*]": "CreateNetworkInterface is authorized on the subnet too; the subnet is "
                "chosen per run from the platform's trainer subnets; the ec2:Vpc condition keeps it in the platform VPC.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:"
                "security-group/*]": "CreateNetworkInterface is authorized on the security group too.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
                "<AWS::AccountId>:log-group:/aws/sagemaker/TrainingJobs:*]": "SageMaker names one log stream per training job under its fixed log group.",
            },
        )

        # Rollouts stream video to their experiment's Kinesis video streams.
        self.rollout_role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "kinesisvideo:DescribeStream",
                    "kinesisvideo:GetDataEndpoint",
                    "kinesisvideo:PutMedia",
                ],
                resources=[
                    stack.format_arn(
                        service="kinesisvideo",
                        resource="stream",
                        resource_name=f"{VIDEO_STREAM_PREFIX}*/*",
                    )
                ],
            )
        )
        acknowledge(
            self.rollout_role,
            {
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kinesisvideo:<AWS::Region>:"
                f"<AWS::AccountId>:stream/{VIDEO_STREAM_PREFIX}*/*]": "Each experiment creates its own streams; the prefix limits workers to them."
            },
        )
        if backend == "robomaker":
            self.rollout_role.add_to_policy(
                iam.PolicyStatement(
                    actions=[
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    resources=[
                        stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="/aws/robomaker/SimulationJobs:*",
                            arn_format=_COLON,
                        )
                    ],
                )
            )
            acknowledge(
                self.rollout_role,
                {
                    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
                    "<AWS::AccountId>:log-group:/aws/robomaker/SimulationJobs:*]": "RoboMaker writes one log stream per simulation job under its fixed log "
                    "group."
                },
            )
        data_objects = f"{token_name(data.bucket, 'Arn')}/experiments/*"
        for role in (self.trainer_role, self.rollout_role):
            acknowledge(
                role,
                {
                    f"AwsSolutions-IAM5[Resource::{data_objects}]": "Every experiment of the platform runs with these job roles, so they may "
                    "touch objects under experiments/ (and nothing else in the bucket).",
                },
            )

    def grant_image_pull_to_rollouts(self, image: SimappImage) -> None:
        """RoboMaker's container form pulls the simapp image with the rollout role."""
        image.grant_pull(self.rollout_role)
        acknowledge(
            self.rollout_role,
            {
                "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken has no resource-level permissions; pulls are "
                "limited to the simapp repository."
            },
        )
