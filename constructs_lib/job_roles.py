"""The job roles of one experiment: its SageMaker trainer's and its rollout workers'.

An experiment's reward function runs inside every one of its rollouts, so its roles reach only
its own runs' data (``experiments/<name>/runs/*``), the pretrained models it names (read only),
its own video streams and the platform key through S3 and Kinesis Video. An explicit deny keeps
both roles away from every experiment's fan-out records (``run.json``, ``fanout/``), whatever
else may grant them. The fan-out's own role is in ``constructs_lib/fanout.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Aws, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from constructs_lib.nag import acknowledge
from constructs_lib.platform_parameters import PlatformReference
from rollouts.naming import EXPERIMENTS_PREFIX

_COLON = ArnFormat.COLON_RESOURCE_NAME
ROLLOUT_SERVICE = {"batch": "ecs-tasks.amazonaws.com", "robomaker": "robomaker.amazonaws.com"}
# The simapp's S3 calls (deepracer-simapp v6.0.5 bundle/markov/boto/s3/s3_client.py:
# download_file, upload_file/upload_fileobj, put_object, delete_object, list_objects_v2) for
# checkpoints, metrics, simtraces and videos: reads, writes, the lock and ready files it deletes
# again, multipart uploads.
DATA_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
# The fan-out's and the run supervisor's records: no job (and so no reward function) may forge
# or remove them.
RECORD_KEYS = (
    f"{EXPERIMENTS_PREFIX}/*/run.json",
    f"{EXPERIMENTS_PREFIX}/*/fanout/*",
    f"{EXPERIMENTS_PREFIX}/*/supervisor/*",
)
ECR_PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]


def grant_image_pull(role: iam.IRole, repository_arn: str) -> None:
    """Pull the simapp image: its repository only, plus the registry login (no resource ARN)."""
    role.add_to_principal_policy(
        iam.PolicyStatement(sid="PullSimappImage", actions=ECR_PULL, resources=[repository_arn])
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="LogInToEcr", actions=["ecr:GetAuthorizationToken"], resources=["*"]
        )
    )


def _grant_service_logs(role: iam.IRole, sid: str, log_group: str) -> None:
    """The service (SageMaker, RoboMaker) writes a job's logs under its fixed log group with the
    job role."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid=sid,
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            resources=[
                Stack.of(role).format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=f"{log_group}:*",
                    arn_format=_COLON,
                )
            ],
        )
    )


class ExperimentJobRoles(Construct):
    """``trainer_role`` and ``rollout_role`` of one experiment (keyword-only props)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        experiment_prefix: str,
        backend: str,
        platform: PlatformReference,
        video_stream_arns: Sequence[str],
        pull_image_for_rollouts: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._platform = platform
        self._bucket_arn = stack.format_arn(
            service="s3", region="", account="", resource=platform.bucket_name
        )
        self.trainer_role = iam.Role(
            self,
            "TrainerRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"DeepRacer trainer of {experiment_prefix} (SageMaker, VPC mode)",
        )
        self.rollout_role = iam.Role(
            self,
            "RolloutRole",
            assumed_by=iam.ServicePrincipal(ROLLOUT_SERVICE[backend]),
            description=f"DeepRacer rollout workers of {experiment_prefix} ({backend})",
        )
        runs = f"{self._bucket_arn}/{experiment_prefix}/runs/*"
        for role, services in (
            (self.trainer_role, ["s3"]),
            (self.rollout_role, ["s3", "kinesisvideo"]),
        ):
            self._grant_data(role, runs, f"{experiment_prefix}/runs/*")
            self._grant_key(role, services)
            self._deny_records(role)
        self._grant_trainer_runtime(stack)
        self._grant_image_pull(self.trainer_role)
        if pull_image_for_rollouts:  # RoboMaker's container form pulls with the job role
            self._grant_image_pull(self.rollout_role)
        if video_stream_arns:
            self.rollout_role.add_to_policy(
                iam.PolicyStatement(
                    sid="StreamOwnVideo",
                    actions=[
                        "kinesisvideo:DescribeStream",
                        "kinesisvideo:GetDataEndpoint",
                        "kinesisvideo:PutMedia",
                    ],
                    resources=list(video_stream_arns),
                )
            )
        if backend == "robomaker":
            _grant_service_logs(
                self.rollout_role, "WriteSimulationLogs", "/aws/robomaker/SimulationJobs"
            )
        self._acknowledge(experiment_prefix, backend, rollouts_pull=pull_image_for_rollouts)

    # ------------------------------------------------------------------ grants
    def _grant_data(self, role: iam.Role, runs: str, runs_key: str) -> None:
        # A pretrained model is copied into the run's own prefix by the fan-out before the
        # trainer starts (lambda/fanout/pretrained.py): no job role reads another prefix.
        role.add_to_policy(
            iam.PolicyStatement(sid="OwnRunsData", actions=DATA_ACTIONS, resources=[runs])
        )
        listed = [runs_key]
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListOwnRuns",
                actions=["s3:ListBucket"],
                resources=[self._bucket_arn],
                conditions={"StringLike": {"s3:prefix": sorted(set(listed))}},
            )
        )

    def _grant_key(self, role: iam.Role, services: list[str]) -> None:
        """SSE-KMS with the platform key, only through the services that encrypt with it."""
        role.add_to_policy(
            iam.PolicyStatement(
                sid="UseDataKeyViaServices",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self._platform.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": [f"{s}.{Aws.REGION}.amazonaws.com" for s in services]
                    }
                },
            )
        )

    def _deny_records(self, role: iam.Role) -> None:
        role.add_to_policy(
            iam.PolicyStatement(
                sid="NeverTheFanoutRecords",
                effect=iam.Effect.DENY,
                actions=["s3:PutObject", "s3:DeleteObject"],
                resources=[f"{self._bucket_arn}/{key}" for key in RECORD_KEYS],
            )
        )

    def _grant_image_pull(self, role: iam.Role) -> None:
        grant_image_pull(role, self._platform.image_repository_arn)

    def _grant_trainer_runtime(self, stack: Stack) -> None:
        role = self.trainer_role
        # SageMaker writes the trainer's logs and metrics with the job role.
        _grant_service_logs(role, "WriteTrainingLogs", "/aws/sagemaker/TrainingJobs")
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PutTrainingMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={
                    "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}
                },
            )
        )
        # VPC mode: SageMaker creates the trainer's network interface with the job role.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="DescribeNetwork",
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
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TrainerNetworkInterface",
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                resources=[
                    stack.format_arn(service="ec2", resource=kind, resource_name="*")
                    for kind in ("network-interface", "subnet", "security-group")
                ],
                # Only inside the platform's VPC.
                conditions={
                    "ArnEquals": {
                        "ec2:Vpc": stack.format_arn(
                            service="ec2", resource="vpc", resource_name=self._platform.vpc_id
                        )
                    }
                },
            )
        )

    def _acknowledge(
        self,
        experiment_prefix: str,
        backend: str,
        *,
        rollouts_pull: bool,
    ) -> None:
        bucket = "arn:<AWS::Partition>:s3:::<PlatformBucketName>"
        here = "arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:"
        data = {
            f"AwsSolutions-IAM5[Resource::{bucket}/{experiment_prefix}/runs/*]": "The trainer and "
            "the rollouts of this experiment share each run's data under its own run prefix; "
            "run ids are generated per deploy.",
        }
        no_resource_level = {
            "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken, ec2:Describe* and "
            "cloudwatch:PutMetricData have no resource-level permissions; PutMetricData is "
            "limited to SageMaker's namespace by condition, image pulls to the simapp repository.",
        }
        acknowledge(
            self.trainer_role,
            {
                **data,
                **no_resource_level,
                f"AwsSolutions-IAM5[Resource::{here.format(service='ec2')}network-interface/*]": (
                    "SageMaker VPC mode creates the trainer's ENI with a generated id at run "
                    "time; the ec2:Vpc condition keeps it in the platform VPC."
                ),
                f"AwsSolutions-IAM5[Resource::{here.format(service='ec2')}subnet/*]": (
                    "CreateNetworkInterface is authorized on the subnet too; the ec2:Vpc "
                    "condition keeps it in the platform VPC."
                ),
                f"AwsSolutions-IAM5[Resource::{here.format(service='ec2')}security-group/*]": (
                    "CreateNetworkInterface is authorized on the security group too."
                ),
                f"AwsSolutions-IAM5[Resource::{here.format(service='logs')}log-group:"
                "/aws/sagemaker/TrainingJobs:*]": "SageMaker names one log stream per training "
                "job under its fixed log group.",
            },
        )
        rollout = {**data, **(no_resource_level if rollouts_pull else {})}
        if backend == "robomaker":
            rollout[
                f"AwsSolutions-IAM5[Resource::{here.format(service='logs')}log-group:"
                "/aws/robomaker/SimulationJobs:*]"
            ] = "RoboMaker writes one log stream per simulation job under its fixed log group."
        acknowledge(self.rollout_role, rollout)
